using System.Reflection;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;

namespace ContinualDiffusion.Tests.Foundation;

/// Runtime/TensorOwnership's Scalar rule, checked on the compiled code: no cdiff method makes a TorchSharp
/// `Scalar` it does not own, directly (an implicit conversion such as `x * 0.5`) or through a TorchSharp method
/// that makes one inside (`a + b`, whose alpha is an implicit 1). Read from the IL, so a new violation anywhere in
/// the library, the CLI, the benchmark tools or the tests fails here, whether or not a test happens to run that line under GC stress.
public class ScalarOwnershipTests(ITestOutputHelper output)
{
    [Fact]
    public void No_cdiff_method_makes_a_scalar_it_does_not_own()
    {
        var violations = new List<string>();
        Assembly[] checkedAssemblies =
        [
            typeof(ContinualDiffusion.Runtime.TensorOwnership).Assembly,   // the library
            typeof(ContinualDiffusion.Cli.CliApp).Assembly,                // cdiff
            Assembly.Load("ContinualDiffusion.Benchmarks"),                // the benchmark tools
            typeof(ScalarOwnershipTests).Assembly,                         // the tests (they run under GC stress too)
        ];
        foreach (var assembly in checkedAssemblies)
            foreach (var method in IlCalls.MethodsOf(assembly).Where(m => m.DeclaringType != typeof(ScalarOwnershipTests) || m.Name is not (nameof(Unowned) or nameof(TorchSharpBatchNorm))))
                foreach (var why in ScalarRule.Violations(method))
                    violations.Add($"{method.DeclaringType?.FullName}.{method.Name}: {why}");
        foreach (var v in violations.Distinct().Order()) output.WriteLine(v);
        Assert.True(violations.Count == 0, $"{violations.Distinct().Count()} call sites make unowned Scalars; first: {violations.FirstOrDefault()}");
    }

    [Fact]
    public void The_rule_sees_an_implicit_scalar_and_an_alpha_made_inside_torchsharp()
    {
        var bad = typeof(ScalarOwnershipTests).GetMethod(nameof(Unowned), BindingFlags.NonPublic | BindingFlags.Static)!;
        var good = typeof(ScalarOwnershipTests).GetMethod(nameof(Owned), BindingFlags.NonPublic | BindingFlags.Static)!;
        var found = ScalarRule.Violations(bad).ToList();
        Assert.Contains(found, v => v.Contains("op_Implicit"));
        Assert.Contains(found, v => v.Contains("op_Addition"));
        var module = typeof(ScalarOwnershipTests).GetMethod(nameof(TorchSharpBatchNorm), BindingFlags.NonPublic | BindingFlags.Static)!;
        Assert.Contains(ScalarRule.Violations(module), v => v.Contains("BatchNorm2d"));
        Assert.Empty(ScalarRule.Violations(good));
    }

    private static torch.Tensor Unowned(torch.Tensor a, torch.Tensor b)
    {
        Scalar half = 0.5;
        return (a + b).mul(half);
    }

    private static torch.nn.Module TorchSharpBatchNorm() => torch.nn.BatchNorm2d(4);

    private static torch.Tensor Owned(torch.Tensor a, torch.Tensor b)
    {
        using var half = 0.5.ToScalar();
        using var one = 1.ToScalar();
        return a.add(b, one).mul(half);
    }
}

/// Which TorchSharp calls make a Scalar nobody owns: the implicit conversions and `ToScalar` extensions (unless
/// the calling method also disposes a Scalar: `using var s = x.ToScalar()`), and every TorchSharp method that
/// reaches one of those inside TorchSharp itself.
internal static class ScalarRule
{
    private static readonly Lazy<HashSet<MethodBase>> MakersInsideTorchSharp = new(FindMakers);

    public static IEnumerable<string> Violations(MethodBase method)
    {
        var calls = IlCalls.CalledBy(method).ToList();
        bool disposesAScalar = calls.Any(IsScalarDispose);
        bool isStaticInit = method is ConstructorInfo { IsStatic: true };
        foreach (var callee in calls)
        {
            if (IsScalarMaker(callee))
            {
                if (callee.Name == "op_Implicit" || !(disposesAScalar || isStaticInit)) yield return $"{Describe(callee)} (an unowned Scalar)";
            }
            else if (callee.DeclaringType?.Assembly == typeof(torch).Assembly && MakersInsideTorchSharp.Value.Contains(Definition(callee)))
                yield return $"{Describe(callee)} (makes an unowned Scalar inside TorchSharp)";
            else if (BuiltModule(callee) is { } module && ForwardMakesScalars(module))
                yield return $"{Describe(callee)} (builds a TorchSharp {module.Name}, whose forward makes an unowned Scalar)";
        }
    }

    // A module's forward is reached through virtual calls (Sequential, Module<T, T>.call) that the IL does not
    // resolve, so the rule looks at where TorchSharp modules are built instead: `nn.BatchNorm2d(16)` builds a
    // BatchNorm2d, whose training-mode forward counts batches with an implicit Scalar 1.
    private static Type? BuiltModule(MethodBase callee)
    {
        var type = callee switch
        {
            ConstructorInfo c => c.DeclaringType,
            MethodInfo m => m.ReturnType,
            _ => null,
        };
        return type is not null && type.Assembly == typeof(torch).Assembly && typeof(torch.nn.Module).IsAssignableFrom(type) ? type : null;
    }

    private static bool ForwardMakesScalars(Type module) =>
        module.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance)
            .Where(m => m.Name == "forward")
            .Any(m => MakersInsideTorchSharp.Value.Contains(Definition(m)) || IlCalls.CalledBy(m).Any(IsScalarMaker));

    private static string Describe(MethodBase m) =>
        $"{m.DeclaringType?.Name}.{m.Name}({string.Join(", ", m.GetParameters().Select(p => p.ParameterType.Name))})";

    private static bool IsScalarMaker(MethodBase m) =>
        (m.DeclaringType == typeof(Scalar) && m.Name == "op_Implicit")
        || (m.DeclaringType == typeof(ScalarExtensionMethods) && m.Name.StartsWith("To") && m.Name.EndsWith("Scalar"));

    // `using var s = x.ToScalar()` compiles to a call of IDisposable.Dispose, not of Scalar.Dispose.
    private static bool IsScalarDispose(MethodBase m) =>
        (m.DeclaringType == typeof(Scalar) || m.DeclaringType == typeof(IDisposable)) && m.Name == "Dispose";

    private static MethodBase Definition(MethodBase m) => m switch
    {
        MethodInfo { IsGenericMethod: true } mi when !mi.IsGenericMethodDefinition => mi.GetGenericMethodDefinition(),
        _ => m,
    };

    /// Fixed point over TorchSharp's own methods: a method makes an unowned Scalar when it calls a maker without
    /// disposing a Scalar, or calls a TorchSharp method that does.
    private static HashSet<MethodBase> FindMakers()
    {
        var calls = IlCalls.MethodsOf(typeof(torch).Assembly)
            .ToDictionary(m => m, m => IlCalls.CalledBy(m).Select(Definition).ToList());
        var makers = new HashSet<MethodBase>(calls.Where(kv =>
            !IsScalarMaker(kv.Key) && kv.Value.Any(IsScalarMaker) && !kv.Value.Any(IsScalarDispose)).Select(kv => kv.Key));
        bool grew = true;
        while (grew)
        {
            grew = false;
            foreach (var (method, callees) in calls)
                if (!makers.Contains(method) && !IsScalarMaker(method) && callees.Any(makers.Contains))
                    grew |= makers.Add(method);
        }
        return makers;
    }
}
