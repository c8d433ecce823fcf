/* CUDA kernels of the frame kernels: one thread per output pixel, the per-pixel rules of
 * frame_kernels_math.h, and IEEE-rounded intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn) wherever
 * the C reference rounds, so that no multiply-add is fused and results match it bit for bit.
 * The file is also compiled with -fmad=false. Arguments arrive validated (frame_kernels.c). */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "frame_kernels_internal.h"
#include "frame_kernels_math.h"
#include "unfoldldm_frame_kernels.h"

namespace {

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;

int cuda_failure(cudaError_t error, const char *where) {
    return ufk_fail(UFK_ERR_CUDA, "%s: %s (%s)", where, cudaGetErrorString(error), cudaGetErrorName(error));
}

int launched(const char *where) {
    cudaError_t error = cudaGetLastError();
    return error == cudaSuccess ? UFK_OK : cuda_failure(error, where);
}

dim3 grid_for(int width, int height) {
    return dim3((unsigned)((width + kBlockX - 1) / kBlockX), (unsigned)((height + kBlockY - 1) / kBlockY));
}

__device__ __forceinline__ float load_sample(const void *base, int dtype, int64_t index) {
    if (dtype == UFK_DTYPE_FP16) return __half2float(static_cast<const __half *>(base)[index]);
    return static_cast<const float *>(base)[index];
}

__global__ void u8_to_planar_kernel(const uint8_t *src, int64_t src_stride, int height, int width, int layout,
                                    int scale_rule, void *dst, int dtype, int padded_height, int padded_width) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= padded_width || y >= padded_height) return;
    const uint8_t *pixel = src + (int64_t)ufk_reflect_index(y, height) * src_stride +
                           (int64_t)ufk_reflect_index(x, width) * ufk_layout_channels(layout);
    const int offsets[3] = {ufk_red_offset(layout), 1, ufk_blue_offset(layout)};
    const float reciprocal = (float)(1.0 / 255.0);
    const int64_t plane = (int64_t)padded_height * padded_width;
    const int64_t index = (int64_t)y * padded_width + x;
    for (int c = 0; c < 3; ++c) {
        const float sample = (float)pixel[offsets[c]];
        const float value = scale_rule == UFK_SCALE_DIVIDE ? __fdiv_rn(sample, 255.0f) : __fmul_rn(sample, reciprocal);
        if (dtype == UFK_DTYPE_FP16) {
            static_cast<__half *>(dst)[c * plane + index] = __float2half_rn(value);
        } else {
            static_cast<float *>(dst)[c * plane + index] = value;
        }
    }
}

/* The C reference's quantize(): clamp, times 255, round half to even; NaN -> 0. */
__device__ __forceinline__ uint8_t quantize(float value) {
    if (!(value > 0.0f)) return 0;
    if (value > 1.0f) value = 1.0f;
    return (uint8_t)__float2int_rn(__fmul_rn(value, 255.0f));
}

/* `nonfinite_count` (NULL: not counted) was zeroed on the stream before the launch. A thread adds
 * its pixel's count with one atomic, and only when it is not 0: a finite frame costs no atomic. */
__global__ void planar_to_u8_kernel(const void *src, int dtype, int src_height, int src_width, uint8_t *dst,
                                    int64_t dst_stride, int height, int width, int layout,
                                    unsigned long long *nonfinite_count) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const int channels = ufk_layout_channels(layout);
    const int offsets[3] = {ufk_red_offset(layout), 1, ufk_blue_offset(layout)};
    const int64_t plane = (int64_t)src_height * src_width;
    const int64_t index = (int64_t)y * src_width + x;
    uint8_t *pixel = dst + (int64_t)y * dst_stride + (int64_t)x * channels;
    unsigned long long nonfinite = 0;
    for (int c = 0; c < 3; ++c) {
        const float value = load_sample(src, dtype, c * plane + index);
        nonfinite += !isfinite(value);
        pixel[offsets[c]] = quantize(value);
    }
    if (channels == 4) pixel[3] = 255;
    if (nonfinite_count != nullptr && nonfinite != 0) atomicAdd(nonfinite_count, nonfinite);
}

/* One thread per tile pixel; it owns that pixel's weight and every (batch, channel) sample, so
 * no atomics are needed (tiles are added one call after another on a stream). */
__global__ void blend_add_kernel(float *total, float *weight, int planes, int height, int width, int overlap,
                                 const void *tile, int dtype, int top, int left, int tile_height, int tile_width) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= tile_width || y >= tile_height) return;
    const float mask = __fmul_rn(ufk_ramp_weight(y, tile_height, top, height, overlap),
                                 ufk_ramp_weight(x, tile_width, left, width, overlap));
    const int64_t frame_plane = (int64_t)height * width;
    const int64_t tile_plane = (int64_t)tile_height * tile_width;
    const int64_t frame_index = (int64_t)(top + y) * width + left + x;
    const int64_t tile_index = (int64_t)y * tile_width + x;
    for (int p = 0; p < planes; ++p) {
        const float product = __fmul_rn(load_sample(tile, dtype, p * tile_plane + tile_index), mask);
        float *sum = total + p * frame_plane + frame_index;
        *sum = __fadd_rn(*sum, product);
    }
    weight[frame_index] = __fadd_rn(weight[frame_index], mask);
}

__global__ void blend_normalize_kernel(const float *total, const float *weight, float *out, int64_t count,
                                       int64_t plane_size) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        out[i] = __fdiv_rn(total[i], weight[i % plane_size]);
    }
}

}  // namespace

extern "C" int ufk_cuda_ready(void) {
    int count = 0;
    cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
        return ufk_fail(UFK_ERR_NO_CUDA, "no usable CUDA device: %s", cudaGetErrorString(error));
    }
    if (count == 0) return ufk_fail(UFK_ERR_NO_CUDA, "no CUDA device found");
    return UFK_OK;
}

extern "C" int ufk_cuda_u8_to_planar(const uint8_t *src, int64_t src_stride, int height, int width, int layout,
                                     int scale_rule, void *dst, int dtype, int padded_height, int padded_width,
                                     void *stream) {
    u8_to_planar_kernel<<<grid_for(padded_width, padded_height), dim3(kBlockX, kBlockY), 0,
                          static_cast<cudaStream_t>(stream)>>>(src, src_stride, height, width, layout, scale_rule, dst,
                                                               dtype, padded_height, padded_width);
    return launched("u8_to_planar kernel launch");
}

extern "C" int ufk_cuda_planar_to_u8(const void *src, int dtype, int src_height, int src_width, uint8_t *dst,
                                     int64_t dst_stride, int height, int width, int layout, int64_t *nonfinite_count,
                                     void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (nonfinite_count != nullptr) {
        cudaError_t error = cudaMemsetAsync(nonfinite_count, 0, sizeof(int64_t), s);
        if (error != cudaSuccess) return cuda_failure(error, "planar_to_u8 count memset");
    }
    /* The count is never negative: int64 and unsigned long long share its bits. */
    planar_to_u8_kernel<<<grid_for(width, height), dim3(kBlockX, kBlockY), 0, s>>>(
        src, dtype, src_height, src_width, dst, dst_stride, height, width, layout,
        reinterpret_cast<unsigned long long *>(nonfinite_count));
    return launched("planar_to_u8 kernel launch");
}

extern "C" int ufk_cuda_blend_clear(float *total, float *weight, int64_t total_count, int64_t weight_count,
                                    void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t error = cudaMemsetAsync(total, 0, sizeof(float) * (size_t)total_count, s);
    if (error == cudaSuccess) error = cudaMemsetAsync(weight, 0, sizeof(float) * (size_t)weight_count, s);
    return error == cudaSuccess ? UFK_OK : cuda_failure(error, "blend_clear memset");
}

extern "C" int ufk_cuda_blend_add(float *total, float *weight, int batch, int channels, int height, int width,
                                  int overlap, const void *tile, int dtype, int top, int left, int tile_height,
                                  int tile_width, void *stream) {
    blend_add_kernel<<<grid_for(tile_width, tile_height), dim3(kBlockX, kBlockY), 0,
                       static_cast<cudaStream_t>(stream)>>>(total, weight, batch * channels, height, width, overlap,
                                                            tile, dtype, top, left, tile_height, tile_width);
    return launched("blend_add kernel launch");
}

extern "C" int ufk_cuda_blend_normalize(const float *total, const float *weight, float *out, int64_t planes,
                                        int64_t plane_size, void *stream) {
    const int64_t count = planes * plane_size;
    const int threads = 256;
    const int64_t wanted = (count + threads - 1) / threads;
    const unsigned blocks = (unsigned)(wanted < 65535 * 16 ? wanted : 65535 * 16);
    blend_normalize_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(total, weight, out, count,
                                                                                      plane_size);
    return launched("blend_normalize kernel launch");
}

/* ------------------------------------------------------------------ benchmark */

namespace {

struct BenchmarkBuffers {
    uint8_t *host_frame = nullptr; /* pageable, like a decoded frame */
    uint8_t *device_frame = nullptr;
    void *device_planar = nullptr;
    int64_t *device_count = nullptr; /* the NaN/Inf count, as the run path converts with it */
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    ~BenchmarkBuffers() {
        delete[] host_frame;
        if (device_frame) cudaFree(device_frame);
        if (device_planar) cudaFree(device_planar);
        if (device_count) cudaFree(device_count);
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
        if (stream) cudaStreamDestroy(stream);
    }
};

template <typename Work>
int time_ms(BenchmarkBuffers &b, int iterations, double *result, const char *what, Work work) {
    for (int i = 0; i < 3; ++i) work(); /* warm-up */
    cudaError_t error = cudaEventRecord(b.start, b.stream);
    for (int i = 0; i < iterations && error == cudaSuccess; ++i) error = work();
    if (error == cudaSuccess) error = cudaEventRecord(b.stop, b.stream);
    if (error == cudaSuccess) error = cudaEventSynchronize(b.stop);
    float elapsed = 0.0f;
    if (error == cudaSuccess) error = cudaEventElapsedTime(&elapsed, b.start, b.stop);
    if (error != cudaSuccess) return cuda_failure(error, what);
    *result = (double)elapsed / iterations;
    return UFK_OK;
}

}  // namespace

extern "C" int ufk_cuda_benchmark_impl(int height, int width, int padded_height, int padded_width, int dtype,
                                       int iterations, double *upload_ms, double *to_planar_ms, double *to_u8_ms,
                                       double *download_ms) {
    BenchmarkBuffers b;
    const size_t frame_bytes = (size_t)height * width * 3;
    const size_t planar_bytes = (size_t)3 * padded_height * padded_width * (dtype == UFK_DTYPE_FP16 ? 2 : 4);
    b.host_frame = new uint8_t[frame_bytes];
    for (size_t i = 0; i < frame_bytes; ++i) b.host_frame[i] = (uint8_t)(i * 2654435761u >> 24);
    cudaError_t error = cudaMalloc(&b.device_frame, frame_bytes);
    if (error == cudaSuccess) error = cudaMalloc(&b.device_planar, planar_bytes);
    if (error == cudaSuccess) error = cudaMalloc(&b.device_count, sizeof(int64_t));
    if (error == cudaSuccess) error = cudaStreamCreateWithFlags(&b.stream, cudaStreamNonBlocking);
    if (error == cudaSuccess) error = cudaEventCreate(&b.start);
    if (error == cudaSuccess) error = cudaEventCreate(&b.stop);
    if (error != cudaSuccess) return cuda_failure(error, "benchmark set-up");
    const int64_t stride = (int64_t)width * 3;
    const dim3 block(kBlockX, kBlockY);
    int status = time_ms(b, iterations, upload_ms, "benchmark upload", [&] {
        return cudaMemcpyAsync(b.device_frame, b.host_frame, frame_bytes, cudaMemcpyHostToDevice, b.stream);
    });
    if (status == UFK_OK) {
        status = time_ms(b, iterations, to_planar_ms, "benchmark u8_to_planar", [&] {
            u8_to_planar_kernel<<<grid_for(padded_width, padded_height), block, 0, b.stream>>>(
                b.device_frame, stride, height, width, UFK_LAYOUT_BGR, UFK_SCALE_MUL_RECIPROCAL, b.device_planar,
                dtype, padded_height, padded_width);
            return cudaGetLastError();
        });
    }
    if (status == UFK_OK) {
        status = time_ms(b, iterations, to_u8_ms, "benchmark planar_to_u8", [&] {
            cudaError_t error = cudaMemsetAsync(b.device_count, 0, sizeof(int64_t), b.stream);
            if (error != cudaSuccess) return error;
            planar_to_u8_kernel<<<grid_for(width, height), block, 0, b.stream>>>(
                b.device_planar, dtype, padded_height, padded_width, b.device_frame, stride, height, width,
                UFK_LAYOUT_BGR, reinterpret_cast<unsigned long long *>(b.device_count));
            return cudaGetLastError();
        });
    }
    if (status == UFK_OK) {
        status = time_ms(b, iterations, download_ms, "benchmark download", [&] {
            return cudaMemcpyAsync(b.host_frame, b.device_frame, frame_bytes, cudaMemcpyDeviceToHost, b.stream);
        });
    }
    return status;
}
