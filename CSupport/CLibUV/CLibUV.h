// libuv, as the system installs it (Debian: libuv1-dev). Only SpindleLoop imports this module.
#include <uv.h>
