/* Per-pixel rules shared by the C reference and the CUDA kernels, so both compute the same thing
 * by construction. Plain C99 that nvcc also compiles as __host__ __device__.
 * Internal header: not part of the C ABI. */
#ifndef UNFOLDLDM_FRAME_KERNELS_MATH_H
#define UNFOLDLDM_FRAME_KERNELS_MATH_H

#include <stdint.h>

#ifdef __CUDACC__
#define UFK_HD __host__ __device__ __forceinline__
#else
#define UFK_HD static inline
#endif

/* numpy.pad(mode="reflect") index for i >= 0 along an axis of n samples: mirror without repeating
 * the edge, periodic with period 2 (n - 1) for pads longer than the axis; n == 1 repeats. */
UFK_HD int ufk_reflect_index(int i, int n) {
    if (i < n) return i;
    if (n == 1) return 0;
    int period = 2 * (n - 1);
    int j = i % period;
    return j < n ? j : period - j;
}

/* Byte offsets of R, G and B inside one pixel of a layout (alpha, if any, is the 4th byte). */
UFK_HD int ufk_layout_channels(int layout) { return layout >= 2 ? 4 : 3; }
UFK_HD int ufk_red_offset(int layout) { return (layout == 0 || layout == 2) ? 2 : 0; }
UFK_HD int ufk_blue_offset(int layout) { return (layout == 0 || layout == 2) ? 0 : 2; }

/* One 1-D blend weight, runtime/tiling.py _ramp: 1, except across `overlap` pixels on a side
 * that borders another tile, where it is (k + 0.5) / overlap, k counted from that side. The
 * float32 operations are numpy's: (float(k) + 0.5f) / float(overlap), then minimum. */
UFK_HD float ufk_ramp_weight(int pos, int length, int start, int full, int overlap) {
    float weight = 1.0f;
    if (overlap == 0) return weight;
    int n = overlap < length ? overlap : length;
    if (start > 0 && pos < n) {
        float r = ((float)pos + 0.5f) / (float)overlap;
        weight = r < weight ? r : weight;
    }
    if (start + length < full && pos >= length - n) {
        int k = n - 1 - (pos - (length - n)); /* ramp[:n][::-1] */
        float r = ((float)k + 0.5f) / (float)overlap;
        weight = r < weight ? r : weight;
    }
    return weight;
}

#endif /* UNFOLDLDM_FRAME_KERNELS_MATH_H */
