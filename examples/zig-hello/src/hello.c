/* zig-hello: prints a greeting naming the architecture it was built for.
 *
 *   hello                  prints the greeting
 *   hello -expect TEXT     prints it, then exits 1 unless it is TEXT
 *
 * With ZIG_HELLO_FAIL set to anything but the empty string, -expect fails
 * whatever the greeting: a test that is made to fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__)
#define ARCH "arm64"
#elif defined(__x86_64__)
#define ARCH "amd64"
#else
#error "an architecture this example does not name"
#endif

int main(int argc, char **argv) {
    const char *greeting = "hello from zig-hello on linux/" ARCH;
    puts(greeting);
    if (argc < 3 || strcmp(argv[1], "-expect") != 0)
        return 0;
    const char *fail = getenv("ZIG_HELLO_FAIL");
    if (fail && *fail) {
        puts("FAIL: ZIG_HELLO_FAIL is set");
        return 1;
    }
    if (strcmp(greeting, argv[2]) != 0) {
        printf("FAIL: expected \"%s\"\n", argv[2]);
        return 1;
    }
    puts("ok");
    return 0;
}
