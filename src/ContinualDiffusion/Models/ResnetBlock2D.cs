using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// Settings of one diffusers ResnetBlock2D ("default" time-embedding norm, SiLU, no up/down sampling inside).
public sealed record ResnetOptions(int InChannels, int OutChannels, int? TembChannels, int Groups, double Eps)
{
    public double OutputScaleFactor { get; init; } = 1.0;
    public double Dropout { get; init; }
}

/// diffusers ResnetBlock2D:
/// h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb))[:, :, None, None]; h = conv2(dropout(silu(norm2(h))));
/// out = (shortcut(x) + h) / output_scale_factor, with a 1x1 conv_shortcut only when the width changes.
public sealed class ResnetBlock2D : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly Linear? time_emb_proj;
    private readonly GroupNorm norm2;
    private readonly Conv2d conv2;
    private readonly Conv2d? conv_shortcut;
    private readonly ResnetOptions _options;

    public ResnetBlock2D(ResnetOptions options) : base(nameof(ResnetBlock2D))
    {
        _options = options;
        norm1 = Norms.Group(options.Groups, options.InChannels, options.Eps);
        conv1 = nn.Conv2d(options.InChannels, options.OutChannels, 3, stride: 1, padding: 1);
        if (options.TembChannels is int temb) time_emb_proj = nn.Linear(temb, options.OutChannels);
        norm2 = Norms.Group(options.Groups, options.OutChannels, options.Eps);
        conv2 = nn.Conv2d(options.OutChannels, options.OutChannels, 3, stride: 1, padding: 1);
        if (options.InChannels != options.OutChannels) conv_shortcut = nn.Conv2d(options.InChannels, options.OutChannels, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, Tensor? temb)
    {
        using var scope = torch.NewDisposeScope();
        var h = conv1.call(nn.functional.silu(norm1.call(input)));
        if (time_emb_proj is not null)
        {
            if (temb is null) throw new ArgumentNullException(nameof(temb), "this resnet block needs a timestep embedding");
            var t = time_emb_proj.call(nn.functional.silu(temb));
            h = h.Plus(t.unsqueeze(-1).unsqueeze(-1));
        }
        h = nn.functional.silu(norm2.call(h));
        if (_options.Dropout > 0) h = nn.functional.dropout(h, _options.Dropout, training);
        h = conv2.call(h);
        var shortcut = conv_shortcut is null ? input : conv_shortcut.call(input);
        var output = shortcut.Plus(h);
        if (_options.OutputScaleFactor != 1.0) output = output.DividedBy(_options.OutputScaleFactor);
        return output.MoveToOuterDisposeScope();
    }
}
