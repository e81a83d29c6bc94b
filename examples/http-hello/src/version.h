/* The version this build answers with; edit it to make a new release. */
#define VERSION "1"
