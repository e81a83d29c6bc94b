/* A C program built inside the cairn sandbox, bit-for-bit reproducibly. */
#include <stdio.h>

int main(void) {
    /* __DATE__ and __TIME__ honour SOURCE_DATE_EPOCH (0 in every step). */
    printf("hello, world (built " __DATE__ " " __TIME__ ", from " __FILE__ ")\n");
    return 0;
}
