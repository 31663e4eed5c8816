using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Data.IO;
using Microsoft.ML.Runtime;

namespace MlNetPeft.MlNet;

/// <summary>
/// The KeyValues annotation of a label column (the class names MapValueToKey learned), detached from its
/// data so the transformer can put it on PredictedLabel and save it in the model zip, whatever its item type.
/// </summary>
internal sealed class KeyValues
{
    private KeyValues(VectorDataViewType type, object values, Delegate getter)
    {
        Type = type;
        Values = values;
        Getter = getter;
    }

    public VectorDataViewType Type { get; }
    public object Values { get; }   // VBuffer<T>
    public Delegate Getter { get; }  // ValueGetter<VBuffer<T>>

    public static KeyValues? Of(DataViewSchema.Column column)
    {
        var annotation = column.Annotations.Schema.GetColumnOrNull(AnnotationUtils.Kinds.KeyValues);
        if (annotation is not { Type: VectorDataViewType type }) return null;
        return (KeyValues)typeof(KeyValues).GetMethod(nameof(Read), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .MakeGenericMethod(type.ItemType.RawType).Invoke(null, [column.Annotations, type])!;
    }

    private static KeyValues Read<T>(DataViewSchema.Annotations annotations, VectorDataViewType type)
    {
        VBuffer<T> values = default;
        annotations.GetValue(AnnotationUtils.Kinds.KeyValues, ref values);
        return From(type, values);
    }

    private static KeyValues From<T>(VectorDataViewType type, VBuffer<T> values)
    {
        var copy = default(VBuffer<T>);
        values.CopyTo(ref copy);
        ValueGetter<VBuffer<T>> getter = (ref VBuffer<T> dst) => copy.CopyTo(ref dst);
        return new KeyValues(type, copy, getter);
    }

    public void AddTo(DataViewSchema.Annotations.Builder builder) => builder.Add(AnnotationUtils.Kinds.KeyValues, Type, Getter);

    /// <summary>Slot names for the Score vector, when the class names are text.</summary>
    public ValueGetter<VBuffer<ReadOnlyMemory<char>>>? TextNames =>
        Getter as ValueGetter<VBuffer<ReadOnlyMemory<char>>>;

    /// <summary>The class names as text, key order.</summary>
    public IReadOnlyList<string> Names() =>
        (IReadOnlyList<string>)typeof(KeyValues).GetMethod(nameof(NamesOf), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .MakeGenericMethod(Type.ItemType.RawType).Invoke(null, [Values])!;

    private static IReadOnlyList<string> NamesOf<T>(object values) =>
        ((VBuffer<T>)values).DenseValues().Select(v => v?.ToString() ?? "").ToList();

    public void Save(IHostEnvironment env, Stream stream)
    {
        typeof(KeyValues).GetMethod(nameof(SaveCore), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .MakeGenericMethod(Type.ItemType.RawType).Invoke(this, [env, stream]);
    }

    private void SaveCore<T>(IHostEnvironment env, Stream stream)
    {
        var values = (VBuffer<T>)Values;
        var saver = new BinarySaver(env, new BinarySaver.Arguments());
        if (!saver.TryWriteTypeAndValue(stream, Type, ref values, out _))
            throw new InvalidOperationException($"Label values of type {Type.ItemType} cannot be saved in a model zip.");
    }

    public static KeyValues Load(IHostEnvironment env, Stream stream)
    {
        var saver = new BinarySaver(env, new BinarySaver.Arguments());
        if (!saver.TryLoadTypeAndValue(stream, out var type, out var value) || type is not VectorDataViewType vector || value is null)
            throw new InvalidDataException("model zip: label values are unreadable");
        return (KeyValues)typeof(KeyValues).GetMethod(nameof(FromBoxed), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .MakeGenericMethod(vector.ItemType.RawType).Invoke(null, [vector, value])!;
    }

    private static KeyValues FromBoxed<T>(VectorDataViewType type, object value) => From(type, (VBuffer<T>)value);
}
