/* The storage of the settings: included by nnexposed._settings only, the one module that owns
   them (every other module reaches them through its functions). */
#ifndef NNX_SETTINGS_STORE_H
#define NNX_SETTINGS_STORE_H

#include "settings.h"

#if defined(_MSC_VER) && !defined(__clang__)
#define NNX_THREAD_LOCAL __declspec(thread)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define NNX_THREAD_LOCAL _Thread_local
#else
#define NNX_THREAD_LOCAL __thread
#endif

static nnx_shared_state nnx_state;
/* The calling thread's override of some settings (config_context), or NULL. */
static NNX_THREAD_LOCAL const nnx_settings* nnx_thread_override = NULL;
/* How many threads have an override installed: while none has, reading the settings skips the
   thread-local lookup. A thread counts itself before installing its override, so it always
   sees its own. */
static int nnx_overrides_installed = 0;

/* The settings in effect for the calling thread, into out[NNX_N_SETTINGS]. */
static void nnx_read_settings(long long* out) {
    const nnx_settings* override = NULL;
    int i;
    if (nnx_load_int(&nnx_overrides_installed) > 0) override = nnx_thread_override;
    if (override == NULL) {
        for (i = 0; i < NNX_N_SETTINGS; i++) out[i] = nnx_load_ll(&nnx_state.process.values[i]);
        return;
    }
    for (i = 0; i < NNX_N_SETTINGS; i++) {
        out[i] = ((override->overridden >> i) & 1u)
                 ? override->values[i] : nnx_load_ll(&nnx_state.process.values[i]);
    }
}

/* Install ``override`` (NULL: none) for the calling thread. */
static void nnx_set_thread_override(const nnx_settings* override) {
    const nnx_settings* previous = nnx_thread_override;
    if (previous == NULL && override != NULL) nnx_add_int(&nnx_overrides_installed, 1);
    nnx_thread_override = override;
    if (previous != NULL && override == NULL) nnx_add_int(&nnx_overrides_installed, -1);
}

#endif
