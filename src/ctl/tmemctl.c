/* placeholder */
#include <stdio.h>
int main(void) { fprintf(stderr, "tmemctl: not built yet\n"); return 1; }
