// Preloaded (LD_PRELOAD) into treaty-devbroker in the compose test's stand-in for Kafka.
// librdkafka's mock cluster binds each broker to 127.0.0.1 on a random port and advertises that
// address in its metadata, which no other container can reach. This moves the first such bind
// (an IPv4 loopback address with port 0) to TREATY_DEVBROKER_LISTEN ("IP:PORT", the container's
// own address and 9092): the broker then listens there and advertises it, so every container on
// the compose network reaches it through kafka:9092 and the address the metadata names.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr* addr, socklen_t len) {
  static int (*real_bind)(int, const struct sockaddr*, socklen_t);
  static int moved_once;
  if (real_bind == NULL) real_bind = (int (*)(int, const struct sockaddr*, socklen_t))dlsym(RTLD_NEXT, "bind");
  const char* want = getenv("TREATY_DEVBROKER_LISTEN");
  if (!moved_once && want != NULL && addr != NULL && addr->sa_family == AF_INET &&
      len >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in* in = (const struct sockaddr_in*)addr;
    char host[64];
    int port = 0;
    const char* colon = strrchr(want, ':');
    if (in->sin_addr.s_addr == htonl(INADDR_LOOPBACK) && in->sin_port == 0 && colon != NULL &&
        (size_t)(colon - want) < sizeof host) {
      memcpy(host, want, (size_t)(colon - want));
      host[colon - want] = '\0';
      port = atoi(colon + 1);
      struct sockaddr_in moved = *in;
      if (port > 0 && port < 65536 && inet_pton(AF_INET, host, &moved.sin_addr) == 1) {
        moved.sin_port = htons((unsigned short)port);
        moved_once = 1;
        return real_bind(fd, (const struct sockaddr*)&moved, sizeof moved);
      }
      fprintf(stderr, "devbroker-listen: cannot use TREATY_DEVBROKER_LISTEN=%s\n", want);
    }
  }
  return real_bind(fd, addr, len);
}
