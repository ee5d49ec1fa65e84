"""The MUter paper's network protocol in a few lines: a frozen conv body, an adversarial head.

A small convolutional network is pre-trained on digits the head never sees,
then frozen; its last layer is fine-tuned under FGSM on other rows and forgets
some of them with MUter and Newton, beside the head retrain timed in the same
run. Prints the Table 7 layout (seconds, speed-up over the retrain) and the
objective-gap fractions (0 = as good as the retrain, 1 = do nothing). Runs
offline on scikit-learn's bundled digits in well under a minute on one core;
``skmuter bench --model net`` is the full run (PGD and FGSM, every forgetter,
MNIST by default).

    python examples/network_benchmark.py
"""

import dataclasses

import torch

from skmuter.benchmark import NET_PROTOCOLS, load_net_data, run_net_benchmark

torch.set_num_threads(1)
# the digits protocol, smaller: 150 head rows, a short pre-training of the body
protocol = dataclasses.replace(NET_PROTOCOLS["digits"], n_train=150, n_body=300,
                               body_epochs=3, pgd_steps=3, polish_max_iter=6)
data = load_net_data("digits", protocol=protocol)
result = run_net_benchmark(data, protocol, removals="1,2%", forgetters=["muter", "newton"],
                           attacks=["fgsm"], progress=False, echo=print,
                           info={"dataset": "digits"})
print()
print(result.table7().to_string(float_format="{:.3g}".format))
print()
print("objective-gap fraction (0 = retrain, 1 = do nothing)")
print(result.figure9_tables()["fgsm"]["effectiveness"].to_string(float_format="{:+.3f}".format))
