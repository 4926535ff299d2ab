/* Minimal CGI response written with stdio: the baseline for scripts/bench-cgi.sh. */
#include <stdio.h>

int main(void)
{
    printf("Status: 200 OK\r\n"
           "Content-Type: text/plain\r\n"
           "Content-Length: 14\r\n"
           "\r\n"
           "Hello, world!\n");
    return 0;
}
