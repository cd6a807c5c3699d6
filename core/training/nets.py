"""The networks each phase trains: thin wrappers over parts of the FusionModel, so
DistributedDataParallel sees only the parts a phase uses."""
from __future__ import annotations

import torch.nn as nn


class ImagePhaseNet(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        feats = self.model.image_encoder.forward_features(x)
        z = self.model.image_proj(feats)
        aux = self.model.aux_head(feats) if self.model.aux_head is not None else None
        return self.model.image_head(z), aux


class HeadsNet(nn.Module):
    def __init__(self, model, train_text: bool = False, train_image: bool = False):
        super().__init__()
        self.model, self.train_text, self.train_image = model, train_text, train_image

    def forward(self, img, txt, mode, drop_image):
        if self.train_image:
            img = self.model.image_encoder.forward_features(img)
        if self.train_text:
            ids, mask = txt
            txt = self.model.text_encoder.forward_features(ids, mask)
        img_for_fusion = img * (1 - drop_image[:, None])
        out = self.model.forward_heads(img_for_fusion, txt, mode)
        out["image"] = self.model.image_head(self.model.image_proj(img))  # image head never loses its image
        return out

