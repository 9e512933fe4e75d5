"""The network of a napari-instseg model as a bioimage.io ``pytorch_state_dict`` architecture.

This file is copied verbatim into every bioimage.io package that napari-instseg exports (its
checksum is in the package's ``rdf.yaml``), so a bioimage.io consumer in Python can rebuild
the network: ``InstSegNetwork(**architecture.kwargs)`` then ``load_state_dict`` with the
package's ``pytorch_state_dict`` weights. The layers themselves come from the napari-instseg
package (``pip install napari-instseg``), which the package's environment file names.

The network of a method returns its outputs by head name; the bioimage.io model runs return
a sequence of tensors, so ``forward`` returns the heads as a tuple in the order of
``outputs`` (the order of the package's output tensors).
"""

from __future__ import annotations

import torch


class InstSegNetwork(torch.nn.Module):
    """A method's network (``net``) whose ``forward`` returns its heads as a tuple.

    Parameters
    ----------
    method : str
        napari-instseg method name (``threeclass``, ``embedseg``, ...).
    method_config : dict
        The method's configuration, as on the model card.
    outputs : list of str
        Head names, in the order of the package's output tensors.
    """

    def __init__(self, method: str, method_config: dict, outputs: list[str]):
        super().__init__()
        from napari_instseg.core.configs import config_from_dict
        from napari_instseg.core.methods import get_method

        spec = get_method(method)
        self.net = spec.build_net(config_from_dict(spec.config_type, method_config))
        self.outputs = tuple(outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = self.net(x)
        return tuple(heads[name] for name in self.outputs)
