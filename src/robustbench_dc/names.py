"""The names users type, in one torch-free place: the command line builds its choices from them without
importing torch (``--help`` stays fast), and each module that implements them checks it implements exactly
these at import.
"""

DATASETS = ("cifar10", "fashion-mnist", "mnist", "digits", "synthetic")
ARCHITECTURES = ("cnn9", "resnet32", "resnet110", "convnet-aig", "drconv", "ir-se")
REGIMES = ("natural", "fgsm", "kurakin", "pgd", "fgsm-rs")
SCHEDULES = ("onecycle", "cosine", "triangle")
INITS = ("default", "dirac")
RECIPES = ("standard", "fast")  # named sets of TrainConfig settings (train.RECIPES, docs/recipes.md)
ATTACKS = ("fgsm", "fgsm-pred", "bim", "pgd", "bpda-pgd", "pgd-smoothed", "apgd-ce", "apgd-dlr", "autoattack", "square", "fgm", "pgd-l2")
L2_ATTACKS = ("fgm", "pgd-l2")  # eps in L2 units of [0, 1] pixels; every other attack is L-inf
BACKENDS = ("torchattacks", "foolbox")
PRESETS = ("smoke", "quick", "paper", "paper-cpu")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
