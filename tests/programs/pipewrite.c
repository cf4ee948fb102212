#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
int main(void) {
    static char big[300000];
    memset(big, 'x', sizeof big);
    int fds[2]; pipe(fds);
    pid_t pid = fork();
    if (pid == 0) { close(fds[1]); char b[7000]; long tot = 0; ssize_t n; while ((n = read(fds[0], b, sizeof b)) > 0) tot += n; printf("child read %ld\n", tot); fflush(stdout); _exit(0); }
    close(fds[0]);
    ssize_t w = write(fds[1], big, sizeof big);
    printf("parent wrote %zd\n", w); fflush(stdout);
    close(fds[1]); wait(NULL); return 0;
}
