using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Checkpoints;

/// Refuses a config that describes a bigger model than its weights file holds, before memory is allocated for
/// it. Without this, a damaged or hostile config.json (`num_hidden_layers: 100000`) makes the loader build the
/// whole model (gigabytes) only to find its keys missing. Each config gives a lower bound of its parameter count
/// from its dominant terms (`MinimumParameters`); the file's count comes from its header alone.
public static class WeightsSizeCheck
{
    public static void Require(double minimumParameters, string configPath, string weightsPath)
    {
        using var file = SafeTensorsFile.Open(weightsPath);
        double fileValues = file.Tensors.Values.Sum(t => t.Shape.Aggregate(1.0, (a, b) => a * b));
        if (minimumParameters > fileValues)
            throw new ConfigException($"{configPath}: describes a model with at least {minimumParameters:N0} parameters, but {weightsPath} holds {fileValues:N0} values: the config does not belong to these weights");
    }
}
