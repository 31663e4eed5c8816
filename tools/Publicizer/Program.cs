// Usage: Publicizer <input.dll> <output.dll>
// Makes every type, method and field of an assembly public (reference copy for compilation only).
using Mono.Cecil;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: Publicizer <input.dll> <output.dll>");
    return 2;
}

var resolver = new DefaultAssemblyResolver();
resolver.AddSearchDirectory(Path.GetDirectoryName(Path.GetFullPath(args[0]))!);
using var assembly = AssemblyDefinition.ReadAssembly(args[0], new ReaderParameters { AssemblyResolver = resolver });

foreach (var type in assembly.MainModule.GetTypes())
{
    if (type.IsNested) type.IsNestedPublic = true; else type.IsPublic = true;
    foreach (var method in type.Methods)
    {
        // Explicit interface implementations must stay private or the compiler sees duplicate members.
        if (method.HasOverrides && method.IsPrivate) continue;
        method.IsPublic = true;
    }
    foreach (var field in type.Fields)
    {
        // Event and auto-property backing fields would clash with their public members of the same name.
        if (field.Name.Contains('<') || type.Events.Any(e => e.Name == field.Name)) continue;
        field.IsPublic = true;
    }
}

Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[1]))!);
assembly.Write(args[1]);
return 0;
