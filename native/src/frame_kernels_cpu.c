/* The C reference of every frame kernel: plain loops over host memory, the same per-pixel rules
 * (frame_kernels_math.h) and the same float32 operations as the NumPy path. Built with
 * -ffp-contract=off so that no compiler fuses a multiply and an add that numpy rounds apart. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frame_kernels_internal.h"
#include "frame_kernels_math.h"
#include "unfoldldm_frame_kernels.h"

/* float32 -> binary16, round to nearest even (F. Giesen's float_to_half_fast3_rtne; NaN -> quiet
 * NaN). The subnormal branch relies on the default rounding mode, round to nearest even. */
static uint16_t float_to_half(float value) {
    const uint32_t f32_infinity = 255u << 23;
    const uint32_t f16_max = (127u + 16u) << 23;
    const uint32_t denorm_magic_bits = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint32_t sign = bits & 0x80000000u;
    bits ^= sign;
    uint16_t half;
    if (bits >= f16_max) {
        half = bits > f32_infinity ? 0x7e00 : 0x7c00;
    } else if (bits < (113u << 23)) {
        float magic, shifted;
        memcpy(&magic, &denorm_magic_bits, sizeof magic);
        memcpy(&shifted, &bits, sizeof shifted);
        shifted += magic;
        uint32_t out;
        memcpy(&out, &shifted, sizeof out);
        half = (uint16_t)(out - denorm_magic_bits);
    } else {
        uint32_t mantissa_odd = (bits >> 13) & 1u;
        bits += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        bits += mantissa_odd;
        half = (uint16_t)(bits >> 13);
    }
    return (uint16_t)(half | (sign >> 16));
}

/* binary16 -> float32, exact. */
static float half_to_float(uint16_t half) {
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1fu;
    uint32_t mantissa = half & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {
        float magnitude = (float)mantissa * 5.9604644775390625e-8f; /* mantissa * 2^-24, exact */
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static float load_sample(const void *base, int dtype, int64_t index) {
    if (dtype == UFK_DTYPE_FP16) return half_to_float(((const uint16_t *)base)[index]);
    return ((const float *)base)[index];
}

int ufk_cpu_u8_to_planar(const uint8_t *src, int64_t src_stride, int height, int width, int layout, int scale_rule,
                         void *dst, int dtype, int padded_height, int padded_width) {
    /* numpy: np.float32(1.0 / 255.0), the double quotient rounded once to float32. */
    const float reciprocal = (float)(1.0 / 255.0);
    /* Only 256 inputs: convert each once (float32, and its FP16 rounding) and look them up. */
    float table[256];
    uint16_t half_table[256];
    for (int v = 0; v < 256; ++v) {
        table[v] = scale_rule == UFK_SCALE_DIVIDE ? (float)v / 255.0f : (float)v * reciprocal;
        half_table[v] = float_to_half(table[v]);
    }
    int *columns = (int *)malloc(sizeof(int) * (size_t)padded_width);
    if (columns == NULL) return ufk_fail(UFK_ERR_BAD_SIZE, "cannot allocate %d column indices", padded_width);
    const int channels = ufk_layout_channels(layout);
    for (int x = 0; x < padded_width; ++x) columns[x] = ufk_reflect_index(x, width) * channels;
    const int offsets[3] = {ufk_red_offset(layout), 1, ufk_blue_offset(layout)};
    const int64_t plane = (int64_t)padded_height * padded_width;
    for (int y = 0; y < padded_height; ++y) {
        const uint8_t *row = src + (int64_t)ufk_reflect_index(y, height) * src_stride;
        for (int c = 0; c < 3; ++c) {
            const int64_t base = c * plane + (int64_t)y * padded_width;
            if (dtype == UFK_DTYPE_FP16) {
                uint16_t *out = (uint16_t *)dst + base;
                for (int x = 0; x < padded_width; ++x) out[x] = half_table[row[columns[x] + offsets[c]]];
            } else {
                float *out = (float *)dst + base;
                for (int x = 0; x < padded_width; ++x) out[x] = table[row[columns[x] + offsets[c]]];
            }
        }
    }
    free(columns);
    return UFK_OK;
}

/* np.rint(np.clip(v, 0, 1) * np.float32(255)).astype(np.uint8); NaN -> 0 (numpy leaves it undefined).
 * Branch-free (random pixels made branches mispredict): the comparisons send NaN to 0 and compile to
 * min/max instructions, and adding and
 * subtracting 2^23 rounds a float in [0, 2^23) to an integer, half to even, in the default
 * rounding mode, as np.rint does (-ffp-contract=off and no fast-math keep the two operations). */
static uint8_t quantize(float value) {
    const float round_magic = 8388608.0f;
    float clamped = value > 0.0f ? value : 0.0f;
    clamped = clamped < 1.0f ? clamped : 1.0f;
    float rounded = clamped * 255.0f + round_magic; /* two roundings: contraction is off */
    return (uint8_t)(int)(rounded - round_magic);
}

int ufk_cpu_planar_to_u8(const void *src, int dtype, int src_height, int src_width, uint8_t *dst, int64_t dst_stride,
                         int height, int width, int layout, int64_t *nonfinite_count) {
    const int channels = ufk_layout_channels(layout);
    const int offsets[3] = {ufk_red_offset(layout), 1, ufk_blue_offset(layout)};
    const int64_t plane = (int64_t)src_height * src_width;
    int64_t nonfinite = 0;
    for (int y = 0; y < height; ++y) {
        uint8_t *row = dst + (int64_t)y * dst_stride;
        for (int x = 0; x < width; ++x) {
            const int64_t index = (int64_t)y * src_width + x;
            uint8_t *pixel = row + (int64_t)x * channels;
            for (int c = 0; c < 3; ++c) {
                const float value = load_sample(src, dtype, c * plane + index);
                nonfinite += !isfinite(value);
                pixel[offsets[c]] = quantize(value);
            }
            if (channels == 4) pixel[3] = 255;
        }
    }
    if (nonfinite_count != NULL) *nonfinite_count = nonfinite;
    (void)src_height;
    return UFK_OK;
}

int ufk_cpu_blend_add(float *total, float *weight, int batch, int channels, int height, int width, int overlap,
                      const void *tile, int dtype, int top, int left, int tile_height, int tile_width) {
    float *column_weights = (float *)malloc(sizeof(float) * (size_t)tile_width);
    if (column_weights == NULL) return ufk_fail(UFK_ERR_BAD_SIZE, "cannot allocate %d column weights", tile_width);
    for (int x = 0; x < tile_width; ++x) column_weights[x] = ufk_ramp_weight(x, tile_width, left, width, overlap);
    const int64_t frame_plane = (int64_t)height * width;
    const int64_t tile_plane = (int64_t)tile_height * tile_width;
    for (int y = 0; y < tile_height; ++y) {
        const float row_weight = ufk_ramp_weight(y, tile_height, top, height, overlap);
        const int64_t frame_row = (int64_t)(top + y) * width + left;
        for (int x = 0; x < tile_width; ++x) {
            const float mask = row_weight * column_weights[x]; /* np.outer, float32 */
            for (int64_t p = 0; p < (int64_t)batch * channels; ++p) {
                const float product = load_sample(tile, dtype, p * tile_plane + (int64_t)y * tile_width + x) * mask;
                total[p * frame_plane + frame_row + x] += product;
            }
            weight[frame_row + x] += mask;
        }
    }
    free(column_weights);
    return UFK_OK;
}

int ufk_cpu_blend_normalize(const float *total, const float *weight, float *out, int64_t planes, int64_t plane_size) {
    for (int64_t i = 0; i < plane_size; ++i) {
        if (!(weight[i] > 0.0f)) {
            return ufk_fail(UFK_ERR_NOT_COVERED, "pixel %lld of the frame has weight %g: the tiles do not cover it",
                            (long long)i, (double)weight[i]);
        }
    }
    for (int64_t p = 0; p < planes; ++p) {
        for (int64_t i = 0; i < plane_size; ++i) out[p * plane_size + i] = total[p * plane_size + i] / weight[i];
    }
    return UFK_OK;
}
