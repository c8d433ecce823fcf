/* The C ABI entry points: argument checks (shared by both devices, so the C reference and the
 * CUDA kernels refuse the same things), dispatch, and error reporting. */
#include <stdarg.h>
#include <stdio.h>

#include "frame_kernels_internal.h"
#include "unfoldldm_frame_kernels.h"

/* Sizes are ints; element counts must also fit comfortably in int64 byte offsets. */
#define UFK_MAX_ELEMENTS ((int64_t)1 << 40)

static _Thread_local char last_detail[512];

int ufk_fail(int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_detail, sizeof last_detail, format, args);
    va_end(args);
    return status;
}

static int succeed(void) {
    last_detail[0] = '\0';
    return UFK_OK;
}

int ufk_abi_version(void) { return UFK_ABI_VERSION; }

int ufk_built_with_cuda(void) {
#ifdef UFK_WITH_CUDA
    return 1;
#else
    return 0;
#endif
}

int ufk_cuda_available(void) {
#ifdef UFK_WITH_CUDA
    return ufk_cuda_ready() == UFK_OK;
#else
    return 0;
#endif
}

const char *ufk_error_message(int status) {
    switch (status) {
        case UFK_OK: return "success";
        case UFK_ERR_NULL_POINTER: return "a required pointer is null";
        case UFK_ERR_BAD_SIZE: return "a size is not positive, too large, or does not fit another";
        case UFK_ERR_BAD_STRIDE: return "a row stride is smaller than one row of pixels";
        case UFK_ERR_BAD_LAYOUT: return "unsupported pixel layout (use BGR, RGB, BGRA or RGBA)";
        case UFK_ERR_BAD_DTYPE: return "unsupported tensor element type (use FP32 or FP16)";
        case UFK_ERR_BAD_DEVICE: return "unknown device (use CPU or CUDA)";
        case UFK_ERR_BAD_ARGUMENT: return "an argument is out of range";
        case UFK_ERR_NOT_COVERED: return "the tiles do not cover the frame";
        case UFK_ERR_NO_CUDA: return "CUDA is not available (library built without CUDA, or no CUDA device)";
        case UFK_ERR_CUDA: return "a CUDA call failed";
        default: return "unknown status code";
    }
}

const char *ufk_last_error_detail(void) { return last_detail; }

/* ------------------------------------------------------------------ shared checks */

static int check_device(int device) {
    if (device == UFK_DEVICE_CPU) return UFK_OK;
    if (device != UFK_DEVICE_CUDA) return ufk_fail(UFK_ERR_BAD_DEVICE, "device %d is neither CPU (0) nor CUDA (1)", device);
#ifdef UFK_WITH_CUDA
    return ufk_cuda_ready();
#else
    return ufk_fail(UFK_ERR_NO_CUDA, "this library was built without CUDA kernels (CPU reference only)");
#endif
}

static int check_layout(int layout) {
    if (layout < UFK_LAYOUT_BGR || layout > UFK_LAYOUT_RGBA) {
        return ufk_fail(UFK_ERR_BAD_LAYOUT, "pixel layout %d is not BGR (0), RGB (1), BGRA (2) or RGBA (3)", layout);
    }
    return UFK_OK;
}

static int check_dtype(int dtype) {
    if (dtype != UFK_DTYPE_FP32 && dtype != UFK_DTYPE_FP16) {
        return ufk_fail(UFK_ERR_BAD_DTYPE, "element type %d is neither FP32 (0) nor FP16 (1)", dtype);
    }
    return UFK_OK;
}

static int check_positive(const char *what, int64_t value) {
    if (value <= 0) return ufk_fail(UFK_ERR_BAD_SIZE, "%s must be positive, got %lld", what, (long long)value);
    return UFK_OK;
}

/* a * b * c... elements without overflow, below UFK_MAX_ELEMENTS. */
static int check_count(const char *what, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t count = 1;
    const int64_t factors[4] = {a, b, c, d};
    for (int i = 0; i < 4; ++i) {
        if (factors[i] > UFK_MAX_ELEMENTS / count) {
            return ufk_fail(UFK_ERR_BAD_SIZE, "%s is too large (more than 2^40 elements)", what);
        }
        count *= factors[i];
    }
    return UFK_OK;
}

static int check_pitched(const char *what, int64_t stride, int height, int width, int layout) {
    const int64_t row_bytes = (int64_t)width * (layout >= UFK_LAYOUT_BGRA ? 4 : 3);
    if (stride < row_bytes) {
        return ufk_fail(UFK_ERR_BAD_STRIDE, "%s row stride %lld bytes is smaller than a row of %d pixels (%lld bytes)",
                        what, (long long)stride, width, (long long)row_bytes);
    }
    return check_count(what, stride, height, 1, 1);
}

#define UFK_TRY(call)              \
    do {                           \
        int ufk_status_ = (call);  \
        if (ufk_status_ != UFK_OK) \
            return ufk_status_;    \
    } while (0)

/* ------------------------------------------------------------------ entry points */

int ufk_u8_to_planar(int device, const uint8_t *src, int64_t src_stride, int height, int width, int layout,
                     int scale_rule, void *dst, int dtype, int padded_height, int padded_width, void *stream) {
    if (src == NULL || dst == NULL) return ufk_fail(UFK_ERR_NULL_POINTER, "u8_to_planar: %s is null", src ? "dst" : "src");
    UFK_TRY(check_positive("frame height", height));
    UFK_TRY(check_positive("frame width", width));
    UFK_TRY(check_layout(layout));
    UFK_TRY(check_dtype(dtype));
    if (scale_rule != UFK_SCALE_MUL_RECIPROCAL && scale_rule != UFK_SCALE_DIVIDE) {
        return ufk_fail(UFK_ERR_BAD_ARGUMENT, "scale rule %d is neither multiply (0) nor divide (1)", scale_rule);
    }
    if (padded_height < height || padded_width < width) {
        return ufk_fail(UFK_ERR_BAD_SIZE, "padded size %dx%d is smaller than the frame %dx%d (width x height)",
                        padded_width, padded_height, width, height);
    }
    UFK_TRY(check_pitched("source frame", src_stride, height, width, layout));
    UFK_TRY(check_count("planar tensor", 3, padded_height, padded_width, 1));
    UFK_TRY(check_device(device));
    if (device == UFK_DEVICE_CPU) {
        UFK_TRY(ufk_cpu_u8_to_planar(src, src_stride, height, width, layout, scale_rule, dst, dtype, padded_height,
                                     padded_width));
    }
#ifdef UFK_WITH_CUDA
    else {
        UFK_TRY(ufk_cuda_u8_to_planar(src, src_stride, height, width, layout, scale_rule, dst, dtype, padded_height,
                                      padded_width, stream));
    }
#endif
    (void)stream;
    return succeed();
}

int ufk_planar_to_u8(int device, const void *src, int dtype, int src_height, int src_width, uint8_t *dst,
                     int64_t dst_stride, int height, int width, int layout, int64_t *nonfinite_count, void *stream) {
    if (src == NULL || dst == NULL) return ufk_fail(UFK_ERR_NULL_POINTER, "planar_to_u8: %s is null", src ? "dst" : "src");
    UFK_TRY(check_positive("tensor height", src_height));
    UFK_TRY(check_positive("tensor width", src_width));
    UFK_TRY(check_positive("frame height", height));
    UFK_TRY(check_positive("frame width", width));
    UFK_TRY(check_layout(layout));
    UFK_TRY(check_dtype(dtype));
    if (height > src_height || width > src_width) {
        return ufk_fail(UFK_ERR_BAD_SIZE, "crop %dx%d is larger than the tensor %dx%d (width x height)", width, height,
                        src_width, src_height);
    }
    UFK_TRY(check_pitched("destination frame", dst_stride, height, width, layout));
    UFK_TRY(check_count("planar tensor", 3, src_height, src_width, 1));
    UFK_TRY(check_device(device));
    if (device == UFK_DEVICE_CPU) {
        UFK_TRY(ufk_cpu_planar_to_u8(src, dtype, src_height, src_width, dst, dst_stride, height, width, layout,
                                     nonfinite_count));
    }
#ifdef UFK_WITH_CUDA
    else {
        UFK_TRY(ufk_cuda_planar_to_u8(src, dtype, src_height, src_width, dst, dst_stride, height, width, layout,
                                      nonfinite_count, stream));
    }
#endif
    (void)stream;
    return succeed();
}

static int check_frame(int batch, int channels, int height, int width) {
    UFK_TRY(check_positive("batch", batch));
    UFK_TRY(check_positive("channels", channels));
    UFK_TRY(check_positive("frame height", height));
    UFK_TRY(check_positive("frame width", width));
    return check_count("blend frame", batch, channels, height, width);
}

int ufk_blend_clear(int device, float *total, float *weight, int batch, int channels, int height, int width,
                    void *stream) {
    if (total == NULL || weight == NULL) return ufk_fail(UFK_ERR_NULL_POINTER, "blend_clear: %s is null", total ? "weight" : "total");
    UFK_TRY(check_frame(batch, channels, height, width));
    UFK_TRY(check_device(device));
    const int64_t plane = (int64_t)height * width;
    const int64_t count = (int64_t)batch * channels * plane;
    if (device == UFK_DEVICE_CPU) {
        for (int64_t i = 0; i < count; ++i) total[i] = 0.0f;
        for (int64_t i = 0; i < plane; ++i) weight[i] = 0.0f;
    }
#ifdef UFK_WITH_CUDA
    else {
        UFK_TRY(ufk_cuda_blend_clear(total, weight, count, plane, stream));
    }
#endif
    (void)stream;
    return succeed();
}

int ufk_blend_add(int device, float *total, float *weight, int batch, int channels, int height, int width, int overlap,
                  const void *tile, int dtype, int top, int left, int tile_height, int tile_width, void *stream) {
    if (total == NULL || weight == NULL || tile == NULL) {
        return ufk_fail(UFK_ERR_NULL_POINTER, "blend_add: %s is null", total == NULL ? "total" : weight == NULL ? "weight" : "tile");
    }
    UFK_TRY(check_frame(batch, channels, height, width));
    UFK_TRY(check_dtype(dtype));
    UFK_TRY(check_positive("tile height", tile_height));
    UFK_TRY(check_positive("tile width", tile_width));
    if (overlap < 0) return ufk_fail(UFK_ERR_BAD_ARGUMENT, "overlap %d is negative", overlap);
    if (top < 0 || left < 0 || top > height - tile_height || left > width - tile_width) {
        return ufk_fail(UFK_ERR_BAD_SIZE, "tile %dx%d at (top %d, left %d) does not fit the frame %dx%d (width x height)",
                        tile_width, tile_height, top, left, width, height);
    }
    UFK_TRY(check_device(device));
    if (device == UFK_DEVICE_CPU) {
        UFK_TRY(ufk_cpu_blend_add(total, weight, batch, channels, height, width, overlap, tile, dtype, top, left,
                                  tile_height, tile_width));
    }
#ifdef UFK_WITH_CUDA
    else {
        UFK_TRY(ufk_cuda_blend_add(total, weight, batch, channels, height, width, overlap, tile, dtype, top, left,
                                   tile_height, tile_width, stream));
    }
#endif
    (void)stream;
    return succeed();
}

int ufk_blend_normalize(int device, const float *total, const float *weight, float *out, int batch, int channels,
                        int height, int width, void *stream) {
    if (total == NULL || weight == NULL || out == NULL) {
        return ufk_fail(UFK_ERR_NULL_POINTER, "blend_normalize: %s is null", total == NULL ? "total" : weight == NULL ? "weight" : "out");
    }
    UFK_TRY(check_frame(batch, channels, height, width));
    UFK_TRY(check_device(device));
    const int64_t planes = (int64_t)batch * channels;
    const int64_t plane = (int64_t)height * width;
    if (device == UFK_DEVICE_CPU) {
        UFK_TRY(ufk_cpu_blend_normalize(total, weight, out, planes, plane));
    }
#ifdef UFK_WITH_CUDA
    else {
        UFK_TRY(ufk_cuda_blend_normalize(total, weight, out, planes, plane, stream));
    }
#endif
    (void)stream;
    return succeed();
}

int ufk_cuda_benchmark(int height, int width, int padded_height, int padded_width, int dtype, int iterations,
                       double *upload_ms, double *to_planar_ms, double *to_u8_ms, double *download_ms) {
    if (upload_ms == NULL || to_planar_ms == NULL || to_u8_ms == NULL || download_ms == NULL) {
        return ufk_fail(UFK_ERR_NULL_POINTER, "cuda_benchmark: an output pointer is null");
    }
    UFK_TRY(check_positive("frame height", height));
    UFK_TRY(check_positive("frame width", width));
    UFK_TRY(check_positive("iterations", iterations));
    UFK_TRY(check_dtype(dtype));
    if (padded_height < height || padded_width < width) {
        return ufk_fail(UFK_ERR_BAD_SIZE, "padded size %dx%d is smaller than the frame %dx%d (width x height)",
                        padded_width, padded_height, width, height);
    }
    UFK_TRY(check_count("planar tensor", 3, padded_height, padded_width, 1));
    UFK_TRY(check_device(UFK_DEVICE_CUDA));
#ifdef UFK_WITH_CUDA
    UFK_TRY(ufk_cuda_benchmark_impl(height, width, padded_height, padded_width, dtype, iterations, upload_ms,
                                    to_planar_ms, to_u8_ms, download_ms));
#endif
    return succeed();
}
