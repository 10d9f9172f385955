namespace ContinualDiffusion.Data;

/// The fine-grained protocol of the testbed (the paper's setting, in Fashion-MNIST): the base model knows every
/// class under a coarse caption ("a photo of a top" for t-shirt, pullover, coat and shirt; "a photo of a shoe" for
/// sandal, sneaker and ankle boot; "a trouser", "a dress", "a bag"), and the continual tasks teach fine-grained
/// classes of a category it already draws (pullover, coat, shirt, sneaker, ankle boot), each from train images the
/// base model never saw: pretraining takes images only from the first `PretrainPoolPerClass` train images of a
/// class, concept images come only from the rest.
public static class FashionProtocol
{
    /// Train images per class (of 6,000) that pretraining may use; concepts are drawn from the other 1,000.
    public const int PretrainPoolPerClass = 5000;

    /// The coarse caption word of each Fashion-MNIST label (0 t-shirt … 9 ankle boot).
    private static readonly string[] Coarse = ["top", "trouser", "top", "dress", "top", "shoe", "top", "shoe", "bag", "shoe"];

    /// The coarse groups in caption order: top, trouser, dress, shoe, bag.
    public static readonly IReadOnlyList<string> CoarseNames = ["top", "trouser", "dress", "shoe", "bag"];

    public static string CoarseName(int label) => Coarse[label];

    /// "a photo of a top" for a coat.
    public static string CoarsePrompt(int label) => $"a photo of a {Coarse[label]}";

    /// The labels a coarse word stands for ("shoe" → sandal, sneaker, ankle boot).
    public static IReadOnlyList<int> Group(string coarse)
    {
        var labels = Enumerable.Range(0, Coarse.Length).Where(l => Coarse[l] == coarse).ToArray();
        return labels.Length > 0 ? labels : throw new ArgumentException($"unknown coarse class '{coarse}'", nameof(coarse));
    }

    /// The one label that represents a coarse group when a single class is needed (the first in label order).
    public static int Representative(string coarse) => Group(coarse)[0];

    /// Train-split indices pretraining may use for `label`, in file order.
    public static IEnumerable<int> PretrainPool(FashionMnist.Split train, int label) => train.IndicesOf(label).Take(PretrainPoolPerClass);

    /// Train-split indices concept images are drawn from for `label`: disjoint from every pretraining pool.
    public static int[] ConceptPool(FashionMnist.Split train, int label) => [.. train.IndicesOf(label).Skip(PretrainPoolPerClass)];
}
