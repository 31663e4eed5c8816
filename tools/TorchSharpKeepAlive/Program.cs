// Usage: TorchSharpKeepAlive <TorchSharp.dll>   (patched in place; a patched file is left as it is)
//
// TorchSharp 0.107 passes a Scalar's or a Tensor's native handle to libtorch and, in the same method, no longer uses
// the managed object, so the GC may finalize it while libtorch still reads it: a Scalar made by an implicit conversion
// (`t.add_(1e-8)`, and the `alpha = 1` TorchSharp adds itself) is freed mid-call when another thread's allocation starts
// a collection. libtorch then reads freed memory ("Expected false to be true" from c10::Scalar::toFloat, or a wrong
// value read silently): measured here, 37 failures in 363,000 calls of `add_` with a thread collecting. This adds
// GC.KeepAlive for each Scalar or Tensor parameter (and a Tensor's or Scalar's `this`) before every return of every
// TorchSharp method that takes one, which is what the method should have done (dotnet/TorchSharp PRs 1434 and 1496
// address the same objects).
using Mono.Cecil;
using Mono.Cecil.Cil;
using Mono.Cecil.Rocks;

if (args.Length != 1)
{
    Console.Error.WriteLine("usage: TorchSharpKeepAlive <TorchSharp.dll>");
    return 2;
}
const string Marker = "MlNetPeft.KeepAliveArguments";
var path = Path.GetFullPath(args[0]);
var resolver = new DefaultAssemblyResolver();
resolver.AddSearchDirectory(Path.GetDirectoryName(path)!);
using var assembly = AssemblyDefinition.ReadAssembly(new MemoryStream(File.ReadAllBytes(path)), new ReaderParameters { AssemblyResolver = resolver });
var module = assembly.MainModule;
if (module.Resources.Any(r => r.Name == Marker)) return 0;

var gc = new TypeReference("System", "GC", module, module.TypeSystem.CoreLibrary);
var keepAlive = new MethodReference("KeepAlive", module.TypeSystem.Void, gc) { HasThis = false };
keepAlive.Parameters.Add(new ParameterDefinition(module.TypeSystem.Object));

static bool Held(TypeReference type) =>
    (type.IsArray ? ((ArrayType)type).ElementType : type).FullName is "TorchSharp.Scalar" or "TorchSharp.torch/Tensor";

int methods = 0;
foreach (var method in module.GetTypes().SelectMany(t => t.Methods).Where(m => m.HasBody))
{
    var held = method.Parameters.Where(p => Held(p.ParameterType)).ToList();
    if (method.HasThis && Held(method.DeclaringType)) held.Insert(0, method.Body.ThisParameter);
    if (held.Count == 0) continue;
    var body = method.Body;
    var il = body.GetILProcessor();
    body.SimplifyMacros();
    foreach (var ret in body.Instructions.Where(i => i.OpCode == OpCodes.Ret).ToList())
    {
        // The ret becomes the first load, so branches and handler ends that pointed at it still do.
        ret.OpCode = OpCodes.Ldarg;
        ret.Operand = held[0];
        var last = ret;
        foreach (var p in held.Select((p, i) => (p, i)))
        {
            if (p.i > 0) il.InsertAfter(last, last = Instruction.Create(OpCodes.Ldarg, p.p));
            il.InsertAfter(last, last = Instruction.Create(OpCodes.Call, keepAlive));
        }
        il.InsertAfter(last, Instruction.Create(OpCodes.Ret));
    }
    body.OptimizeMacros();
    methods++;
}
module.Resources.Add(new EmbeddedResource(Marker, ManifestResourceAttributes.Private, [1]));
// Written beside and moved over: a copy hard-linked to the NuGet cache keeps the package's file as it was.
var patched = path + ".keepalive";
assembly.Write(patched);
File.Move(patched, path, overwrite: true);
Console.WriteLine($"TorchSharpKeepAlive: {methods} methods of {path} keep their Scalar and Tensor arguments alive until they return");
return 0;
