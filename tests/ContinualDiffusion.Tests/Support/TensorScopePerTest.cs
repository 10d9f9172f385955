using System.Reflection;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using Xunit.Sdk;

[assembly: TensorScopePerTest]

namespace ContinualDiffusion.Tests.Support;

/// Runs every test of the assembly inside its own dispose scope (Runtime/TensorOwnership's rule, applied to test
/// code): a tensor a test makes without `using` — `Assert.Equal(0f, (a - b).abs().max().item<float>())` — is held
/// by the scope until the test ends instead of being left to the finalizer, which could free it while libtorch
/// still reads it (the intermittent libc10 segfault of issue 11). The scope is thread-static, as TorchSharp's
/// scopes are; xunit calls Before, the test and After on one thread for the synchronous tests this assembly has.
[AttributeUsage(AttributeTargets.Assembly | AttributeTargets.Class | AttributeTargets.Method)]
public sealed class TensorScopePerTestAttribute : BeforeAfterTestAttribute
{
    [ThreadStatic] private static Stack<DisposeScope>? _scopes;

    public override void Before(MethodInfo methodUnderTest) => (_scopes ??= new()).Push(torch.NewDisposeScope());

    public override void After(MethodInfo methodUnderTest)
    {
        if (_scopes is { Count: > 0 } s) s.Pop().Dispose();
        else throw new InvalidOperationException($"{methodUnderTest.Name}: the test ended on another thread than it began; its dispose scope was not found");
    }
}
