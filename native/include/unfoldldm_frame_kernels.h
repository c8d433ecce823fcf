/* Frame kernels of UnfoldLDM-Edge: the per-frame work around the TensorRT graphs, with a C ABI.
 *
 *   ufk_u8_to_planar   8-bit interleaved BGR/RGB/BGRA/RGBA (any row stride in bytes) -> planar
 *                      RGB FP32 or FP16 (3, H, W) scaled to [0, 1], reflect-padded at the bottom and
 *                      right to (3, padded_h, padded_w): runtime/video/sources.py bgr_to_rgb_float
 *                      followed by runtime/pipeline.py pad_nchw (numpy "reflect").
 *   ufk_planar_to_u8   the inverse: planar RGB FP32/FP16 (3, H, W), top-left crop of h x w, clamp
 *                      to [0, 1], times 255 in float32, round half to even (np.rint), to 8-bit
 *                      interleaved BGR/RGB/BGRA/RGBA (alpha 255): runtime/video/sinks.py
 *                      rgb_float_to_bgr8 and runtime/image_io.py _quantize. NaN becomes 0; on
 *                      request it also counts the NaN and infinite samples it converted (the
 *                      NaN/Inf check of frames that leave the device as bytes, docs/GPU.md).
 *   ufk_blend_*        overlap-add of tiles with the linear-ramp weight mask and the final division
 *                      by the summed weights: runtime/tiling.py Blender, same float32 operations in
 *                      the same order (no fused multiply-add), so results are bit-identical.
 *
 * Every function takes `device`: UFK_DEVICE_CPU runs the C reference on host pointers and
 * returns when done; UFK_DEVICE_CUDA runs the CUDA kernel on device pointers, asynchronously on
 * `stream` (a cudaStream_t; NULL = legacy default stream), in the calling thread's current
 * context (the primary context, the one the CUDA runtime, pycuda's primary-context path and
 * PyTorch use). Every function returns UFK_OK or an error code; ufk_error_message() names a code
 * and ufk_last_error_detail() says what was wrong in this thread's last failed call.
 */
#ifndef UNFOLDLDM_FRAME_KERNELS_H
#define UNFOLDLDM_FRAME_KERNELS_H

#include <stdint.h>

#if defined(_WIN32)
#define UFK_API __declspec(dllexport)
#else
#define UFK_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature or the meaning of an argument changes; Python checks it. */
#define UFK_ABI_VERSION 2

enum ufk_status {
    UFK_OK = 0,
    UFK_ERR_NULL_POINTER = 1,   /* a required pointer is NULL */
    UFK_ERR_BAD_SIZE = 2,       /* a size is <= 0, too large, or does not fit another */
    UFK_ERR_BAD_STRIDE = 3,     /* a row stride is smaller than a row of pixels */
    UFK_ERR_BAD_LAYOUT = 4,     /* an unknown pixel layout */
    UFK_ERR_BAD_DTYPE = 5,      /* an unknown tensor element type */
    UFK_ERR_BAD_DEVICE = 6,     /* an unknown device */
    UFK_ERR_BAD_ARGUMENT = 7,   /* any other argument out of range (scale rule, overlap, tile place) */
    UFK_ERR_NOT_COVERED = 8,    /* blend: a pixel got no tile weight (a tile-planning bug) */
    UFK_ERR_NO_CUDA = 9,        /* built without CUDA, or no CUDA device/driver here */
    UFK_ERR_CUDA = 10           /* a CUDA call failed; the detail names the CUDA error */
};

enum ufk_device { UFK_DEVICE_CPU = 0, UFK_DEVICE_CUDA = 1 };

/* 8-bit interleaved pixel layouts (bytes in memory order). Alpha is dropped on input and
 * written as 255 on output. */
enum ufk_layout { UFK_LAYOUT_BGR = 0, UFK_LAYOUT_RGB = 1, UFK_LAYOUT_BGRA = 2, UFK_LAYOUT_RGBA = 3 };

/* Planar tensor element types. FP16 is IEEE binary16, converted from float32 with round to
 * nearest even (numpy astype(float16), CUDA __float2half_rn). */
enum ufk_dtype { UFK_DTYPE_FP32 = 0, UFK_DTYPE_FP16 = 1 };

/* How 8-bit samples become [0, 1]: the video path multiplies by float32(1/255)
 * (bgr_to_rgb_float), still images divide by 255 (image_io). They differ by one float32 ULP on
 * 126 of the 256 values; pick the one the frames would otherwise go through. */
enum ufk_scale_rule { UFK_SCALE_MUL_RECIPROCAL = 0, UFK_SCALE_DIVIDE = 1 };

UFK_API int ufk_abi_version(void);
/* 1 when the library was built with CUDA kernels, else 0. */
UFK_API int ufk_built_with_cuda(void);
/* 1 when CUDA kernels are built and a CUDA device is usable now, else 0 (never an error). */
UFK_API int ufk_cuda_available(void);
/* A fixed English sentence for a status code (never NULL). */
UFK_API const char *ufk_error_message(int status);
/* What was wrong in this thread's last failed call ("" when none); valid until the next call. */
UFK_API const char *ufk_last_error_detail(void);

/* src: height rows of width pixels, row r at src + r * src_stride bytes.
 * dst: planar (3, padded_height, padded_width) of dtype, contiguous; channel 0 is R.
 * padded_height >= height, padded_width >= width (reflect padding, numpy semantics). */
UFK_API int ufk_u8_to_planar(int device, const uint8_t *src, int64_t src_stride, int height, int width,
                             int layout, int scale_rule, void *dst, int dtype, int padded_height,
                             int padded_width, void *stream);

/* src: planar (3, src_height, src_width) of dtype, contiguous, channel 0 is R.
 * dst: height rows of width pixels (height <= src_height, width <= src_width: the top-left
 * crop), row r at dst + r * dst_stride bytes.
 * nonfinite_count: NULL, or one int64 (host memory for the CPU, device memory for CUDA) that the
 * call sets to the number of NaN or infinite samples among the 3 * height * width it converts
 * (the crop only). CUDA zeroes it and counts on `stream`, so read it after synchronising; the
 * samples are still converted (NaN to 0, infinities to 0 or 255). */
UFK_API int ufk_planar_to_u8(int device, const void *src, int dtype, int src_height, int src_width, uint8_t *dst,
                             int64_t dst_stride, int height, int width, int layout, int64_t *nonfinite_count,
                             void *stream);

/* Set total (batch, channels, height, width) and weight (height, width), both float32, to 0. */
UFK_API int ufk_blend_clear(int device, float *total, float *weight, int batch, int channels, int height, int width,
                            void *stream);

/* Blender.add: tile (batch, channels, tile_height, tile_width) of dtype, contiguous, placed at
 * (top, left) of the frame (height, width); weights ramp across `overlap` on every tile side
 * that borders another tile (start > 0, or end < frame size). */
UFK_API int ufk_blend_add(int device, float *total, float *weight, int batch, int channels, int height, int width,
                          int overlap, const void *tile, int dtype, int top, int left, int tile_height,
                          int tile_width, void *stream);

/* Blender.result: out = total / weight (out may be total). The CPU reference checks every
 * weight first and returns UFK_ERR_NOT_COVERED without writing when one is <= 0; the CUDA
 * kernel does not check (that would need a synchronisation): an uncovered pixel gives inf/NaN. */
UFK_API int ufk_blend_normalize(int device, const float *total, const float *weight, float *out, int batch,
                                int channels, int height, int width, void *stream);

/* Benchmark helper for machines without PyTorch or pycuda: allocates device buffers, runs each
 * kernel `iterations` times after a warm-up and writes the mean milliseconds per call (CUDA
 * events): the 8-bit upload (pageable host memory, as a decoded frame is), ufk_u8_to_planar,
 * ufk_planar_to_u8 (with its NaN/Inf count, as the run path converts) and the 8-bit download.
 * UFK_ERR_NO_CUDA without CUDA. */
UFK_API int ufk_cuda_benchmark(int height, int width, int padded_height, int padded_width, int dtype,
                               int iterations, double *upload_ms, double *to_planar_ms, double *to_u8_ms,
                               double *download_ms);

#ifdef __cplusplus
}
#endif

#endif /* UNFOLDLDM_FRAME_KERNELS_H */
