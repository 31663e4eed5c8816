using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// A constant made once on the host (a scaling row, a selection matrix) and kept as a tensor on the device and dtype
/// last asked for. Locked because prediction engines may share a model across threads.
/// </summary>
internal sealed class DeviceConstant(float[] values, long[] shape) : IDisposable
{
    private Tensor? _tensor;

    public Tensor On(Device device, ScalarType dtype = ScalarType.Float32)
    {
        lock (values)
        {
            if (_tensor is { } t && t.device_type == device.type && t.device_index == device.index && t.dtype == dtype) return t;
            _tensor?.Dispose();
            using var scope = NewDisposeScope();
            _tensor = tensor(values, shape).to(dtype).to(device).DetachFromDisposeScope();
            return _tensor;
        }
    }

    public void Dispose()
    {
        _tensor?.Dispose();
        _tensor = null;
    }
}
