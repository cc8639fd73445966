// The C ABI of Boost.Context's fcontext (Boost 1.74, Debian 12: libboost-context-dev).
//
// libboost_context exports these three assembly routines as plain C symbols; Boost's own header
// (boost/context/detail/fcontext.hpp) is C++, so the declarations are repeated here.
#ifndef SPINDLE_CBOOSTCONTEXT_H
#define SPINDLE_CBOOSTCONTEXT_H

#include <stddef.h>

/// An opaque saved execution context: the stack pointer of a suspended context.
typedef void *fcontext_t;

/// What a jump returns in the resumed context: the context that jumped here, and its payload.
typedef struct {
    fcontext_t fctx;
    void *data;
} transfer_t;

/// Saves the current context, switches to `to`, passing `vp`; returns when something jumps back.
transfer_t jump_fcontext(fcontext_t const to, void *vp);

/// Prepares a context on the stack whose highest address is `sp` (`size` bytes below it) that
/// calls `fn` when first jumped to. `fn` must never return.
fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

/// Switches to `to` and runs `fn` on top of it before it resumes.
transfer_t ontop_fcontext(fcontext_t const to, void *vp, transfer_t (*fn)(transfer_t));

#endif
