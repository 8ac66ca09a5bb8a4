/*
 * The smallest native user of a prebuilt library: loads it with dlopen, checks the ABI version,
 * creates a named segment, writes through one mapping and reads through a second, closes both
 * and unlinks it. `make package` runs it under qemu-user for the foreign-architecture builds.
 *
 * usage: smoke LIBRARY ABI_VERSION
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  uint64_t handle, addr, len, created, detail, identity[2];
} SbMapping;

typedef uint32_t (*abi_fn)(void);
typedef int32_t (*open_fn)(const uint8_t *, uint32_t, uint64_t, uint32_t, uint32_t, uint32_t,
                           int64_t, SbMapping *);
typedef int32_t (*handle_fn)(int32_t);
typedef int32_t (*unlink_fn)(const uint8_t *, uint32_t);

static void *need(void *lib, const char *name) {
  void *f = dlsym(lib, name);
  if (!f) {
    fprintf(stderr, "smoke: %s is not exported\n", name);
    exit(1);
  }
  return f;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: smoke LIBRARY ABI_VERSION\n");
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "smoke: %s\n", dlerror());
    return 1;
  }
  abi_fn abi = (abi_fn)need(lib, "sb_abi_version");
  open_fn open_name = (open_fn)need(lib, "sb_open_name");
  handle_fn close_handle = (handle_fn)need(lib, "sb_close");
  unlink_fn unlink_name = (unlink_fn)need(lib, "sb_unlink_name");

  uint32_t version = abi();
  if (version != (uint32_t)strtoul(argv[2], NULL, 10)) {
    fprintf(stderr, "smoke: ABI version %u, expected %s\n", version, argv[2]);
    return 1;
  }
  char name[64];
  snprintf(name, sizeof name, "/sb-smoke-%ld", (long)getpid());
  uint32_t len = (uint32_t)strlen(name);
  SbMapping a, b;
  /* how 1 = create exclusively, 0 = open; mode 0600; owner -1 = this user or root */
  int32_t rc = open_name((const uint8_t *)name, len, 4096, 1, 0, 0600, -1, &a);
  if (rc != 0 || !a.created || a.len != 4096) {
    fprintf(stderr, "smoke: create %s failed: %d\n", name, rc);
    return 1;
  }
  rc = open_name((const uint8_t *)name, len, 0, 0, 0, 0600, -1, &b);
  if (rc != 0 || b.created || b.addr == a.addr) {
    fprintf(stderr, "smoke: open %s failed: %d\n", name, rc);
    unlink_name((const uint8_t *)name, len);
    return 1;
  }
  ((volatile uint8_t *)(uintptr_t)a.addr)[4095] = 0xa5;
  uint8_t seen = ((volatile uint8_t *)(uintptr_t)b.addr)[4095];
  int32_t closed_a = close_handle((int32_t)a.handle);
  int32_t closed_b = close_handle((int32_t)b.handle);
  int32_t unlinked = unlink_name((const uint8_t *)name, len);
  if (seen != 0xa5 || closed_a != 0 || closed_b != 0 || unlinked != 0) {
    fprintf(stderr, "smoke: round trip through %s failed (read 0x%02x, close %d %d, unlink %d)\n",
            name, seen, closed_a, closed_b, unlinked);
    return 1;
  }
  printf("smoke: %s: ABI %u, create/open/write/read/close/unlink ok\n", argv[1], version);
  return 0;
}
