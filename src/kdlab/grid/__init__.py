"""The CIFAR-100 grid (`kdlab study cifar100`): its plan, costs and report."""
