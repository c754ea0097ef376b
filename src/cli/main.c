/* placeholder until the CLI lands */
#include <stdio.h>
int main(void) { fprintf(stderr, "kiln: the command-line tool is being written\n"); return 2; }
