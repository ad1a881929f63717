"""What ``-d cuda`` needs, checked before any work starts so that a missing piece is one clear error.

The GPU is found through the NVIDIA driver's own library (libcuda, via ctypes), so the check needs
no optional package and runs the same whatever route the graphs take to the GPU.
"""
import ctypes

from .errors import UserError


def require_gpu():
    """Name of the first CUDA GPU; UserError saying what is missing otherwise."""
    try:
        driver = ctypes.CDLL('libcuda.so.1')
    except OSError:
        raise UserError('-d cuda: no NVIDIA driver on this machine (libcuda.so.1 not found); use -d cpu') from None
    status = driver.cuInit(0)
    count = ctypes.c_int(0)
    if status == 0:
        status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status != 0 or count.value == 0:
        raise UserError('-d cuda: the NVIDIA driver finds no usable GPU (CUDA status {}, {} devices); use -d cpu'.format(
            status, count.value))
    device = ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    driver.cuDeviceGet(ctypes.byref(device), 0)
    driver.cuDeviceGetName(name, 256, device)
    return name.value.decode(errors='replace')
