/* LD_PRELOAD shim for the tests: every bind() to the wildcard address binds to the
 * loopback address instead. Debian's Orthanc (1.10) has no option for the address it
 * listens on, and the tests must not open ports to the network.
 * Built by tests/dicom_node/orthanc_server.py with the system C compiler. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_function)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    static bind_function real_bind = 0;
    if (!real_bind) real_bind = (bind_function) dlsym(RTLD_NEXT, "bind");
    if (address && address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in copy;
        memcpy(&copy, address, sizeof copy);
        if (copy.sin_addr.s_addr == htonl(INADDR_ANY)) {
            copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *) &copy, sizeof copy);
        }
    }
    if (address && address->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 copy;
        memcpy(&copy, address, sizeof copy);
        if (memcmp(&copy.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0) {
            copy.sin6_addr = in6addr_loopback;
            return real_bind(fd, (const struct sockaddr *) &copy, sizeof copy);
        }
    }
    return real_bind(fd, address, length);
}
