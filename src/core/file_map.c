/* src/core/file_map.c - read-only file mapping (file_map.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file_map.h"


typedef struct file_map {
  void *addr;
  size_t size;
  int mapped; /* 1: munmap, 0: free */
} file_map;

static kiln_status read_whole(int fd, const char *path, size_t size, file_map *fm) {
  fm->addr = malloc(size ? size : 1);
  if (!fm->addr) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading %s (%zu bytes)", path, size);
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, (char *)fm->addr + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      free(fm->addr);
      return kiln_error(KILN_ERR_IO, "cannot read %s: %s; check the file", path,
                        n < 0 ? strerror(errno) : "it shrank while being read");
    }
    got += (size_t)n;
  }
  fm->size = size;
  fm->mapped = 0;
  return KILN_OK;
}

kiln_status kiln_file_map(const char *path, const void **data, size_t *size, void **handle) {
  if (!path || !data || !size || !handle)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_file_map: NULL argument");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return kiln_error(errno == ENOENT ? KILN_ERR_NOT_FOUND : KILN_ERR_IO,
                      "cannot open %s: %s; check the path", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return kiln_error(KILN_ERR_IO, "%s is not a regular file; pass the path of a file", path);
  }
  file_map *fm = calloc(1, sizeof *fm);
  if (!fm) {
    close(fd);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory mapping %s", path);
  }
  size_t n = (size_t)st.st_size;
  void *addr = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  kiln_status s = KILN_OK;
  if (addr != MAP_FAILED) {
    fm->addr = addr;
    fm->size = n;
    fm->mapped = 1;
  } else {
    s = read_whole(fd, path, n, fm);
  }
  close(fd);
  if (s != KILN_OK) {
    free(fm);
    return s;
  }
  *data = fm->addr;
  *size = fm->size;
  *handle = fm;
  return KILN_OK;
}

void kiln_file_unmap(void *handle) {
  file_map *fm = handle;
  if (!fm) return;
  if (fm->mapped)
    munmap(fm->addr, fm->size);
  else
    free(fm->addr);
  free(fm);
}
