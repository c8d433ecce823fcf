/* Internal interface between the C entry points (frame_kernels.c) and the CUDA kernels
 * (frame_kernels_cuda.cu). Arguments arrive here already validated. Not part of the C ABI. */
#ifndef UNFOLDLDM_FRAME_KERNELS_INTERNAL_H
#define UNFOLDLDM_FRAME_KERNELS_INTERNAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Records this thread's error detail (printf format) and returns `status`. */
int ufk_fail(int status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The C reference (frame_kernels_cpu.c), on host pointers. */
int ufk_cpu_u8_to_planar(const uint8_t *src, int64_t src_stride, int height, int width, int layout, int scale_rule,
                         void *dst, int dtype, int padded_height, int padded_width);
int ufk_cpu_planar_to_u8(const void *src, int dtype, int src_height, int src_width, uint8_t *dst, int64_t dst_stride,
                         int height, int width, int layout, int64_t *nonfinite_count);
int ufk_cpu_blend_add(float *total, float *weight, int batch, int channels, int height, int width, int overlap,
                      const void *tile, int dtype, int top, int left, int tile_height, int tile_width);
int ufk_cpu_blend_normalize(const float *total, const float *weight, float *out, int64_t planes, int64_t plane_size);

#ifdef UFK_WITH_CUDA
int ufk_cuda_ready(void);
int ufk_cuda_u8_to_planar(const uint8_t *src, int64_t src_stride, int height, int width, int layout, int scale_rule,
                          void *dst, int dtype, int padded_height, int padded_width, void *stream);
int ufk_cuda_planar_to_u8(const void *src, int dtype, int src_height, int src_width, uint8_t *dst,
                          int64_t dst_stride, int height, int width, int layout, int64_t *nonfinite_count,
                          void *stream);
int ufk_cuda_blend_clear(float *total, float *weight, int64_t total_count, int64_t weight_count, void *stream);
int ufk_cuda_blend_add(float *total, float *weight, int batch, int channels, int height, int width, int overlap,
                       const void *tile, int dtype, int top, int left, int tile_height, int tile_width, void *stream);
int ufk_cuda_blend_normalize(const float *total, const float *weight, float *out, int64_t planes, int64_t plane_size,
                             void *stream);
int ufk_cuda_benchmark_impl(int height, int width, int padded_height, int padded_width, int dtype, int iterations,
                            double *upload_ms, double *to_planar_ms, double *to_u8_ms, double *download_ms);
#endif

#ifdef __cplusplus
}
#endif

#endif /* UNFOLDLDM_FRAME_KERNELS_INTERNAL_H */
