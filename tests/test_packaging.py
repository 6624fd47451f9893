"""What the install note in README's Packaging section rests on."""

import subprocess
import sys


def test_attacking_imports_neither_requests_nor_torchvision():
    """torchattacks pins requests~=2.25.1 but never imports it: installing it without that pin is safe. Nor is
    torchvision imported (only a dataset download needs it), so a CPU torch beside a torchvision that cannot load
    still evaluates."""
    code = (
        "import sys, torch\nfrom robustbench_dc.attacks import get_attack, run_attack\nimport torchattacks\nmodel = "
        "torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()\nx, y = torch.rand(4, 3, 2, 2), "
        "torch.tensor([0, 1, 2, 0])\nfor name in ('fgsm', 'bim', 'pgd', 'square'):\n    run_attack(get_attack(name), "
        "model, x, y, 8 / 255, backend='torchattacks')\nprint('requests' in sys.modules, 'torchvision' in "
        "sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"
