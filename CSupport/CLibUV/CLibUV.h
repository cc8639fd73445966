// libuv, as the system installs it (Debian: libuv1-dev). Only SpindleLoop imports this module.
#include <uv.h>

// uv_loop_configure is variadic, which Swift cannot call: one shim per option used.
static inline int spindle_uv_enable_idle_time(uv_loop_t *loop) {
    return uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
}
