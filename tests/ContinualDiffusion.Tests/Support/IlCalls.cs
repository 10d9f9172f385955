using System.Reflection;
using System.Reflection.Emit;

namespace ContinualDiffusion.Tests.Support;

/// The methods a compiled method calls, read from its IL (call, callvirt, newobj, ldftn): enough to check rules
/// about which library APIs the code base may use, without a Roslyn analyzer.
internal static class IlCalls
{
    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    private const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance
        | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// Every method and constructor declared in the assembly (nested and compiler-generated types included).
    public static IEnumerable<MethodBase> MethodsOf(Assembly assembly)
    {
        Type[] types;
        try { types = assembly.GetTypes(); }
        catch (ReflectionTypeLoadException e) { types = e.Types.Where(t => t is not null).ToArray()!; }
        foreach (var type in types)
        {
            foreach (var m in type.GetMethods(Everything)) yield return m;
            foreach (var c in type.GetConstructors(Everything)) yield return c;
        }
    }

    /// The methods `method` calls directly; unresolvable tokens are skipped.
    public static IEnumerable<MethodBase> CalledBy(MethodBase method)
    {
        byte[]? il;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); }
        catch (Exception) { yield break; }
        if (il is null) yield break;
        var module = method.Module;
        Type[]? typeArgs = method.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null;
        Type[]? methodArgs = method is MethodInfo { IsGenericMethod: true } mi ? mi.GetGenericArguments() : null;
        int i = 0;
        while (i < il.Length)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            if (!OpCodesByValue.TryGetValue(value, out var op)) yield break;   // not IL we understand: stop
            int operandStart = i;
            i += OperandSize(op.OperandType, il, i);
            if (op.OperandType != OperandType.InlineMethod) continue;
            int token = BitConverter.ToInt32(il, operandStart);
            MethodBase? callee;
            try { callee = module.ResolveMethod(token, typeArgs, methodArgs); }
            catch (Exception) { callee = null; }
            if (callee is not null) yield return callee;
        }
    }

    private static int OperandSize(OperandType type, byte[] il, int at) => type switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, at),
        _ => 4,
    };
}
