"""Groups of layer types that composites assign rules to."""
from __future__ import annotations

from torch import nn

#: forward convolutions
PlainConvolution = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: transposed convolutions
TransposedConvolution = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: convolutions, including transposed ones
Convolution = PlainConvolution + TransposedConvolution
#: fully connected ("dense") layers
Dense = (nn.Linear,)
#: every layer with weights that maps its input linearly (the layers LRP rules are about)
Linear = Convolution + Dense
BatchNorm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: average / sum pooling: linear with positive weights
AvgPool = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
           nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
#: max pooling: winner takes all (the gradient)
MaxPool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
           nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
#: elementwise non-linearities, relevance passes through them
Activation = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
              nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish,
              nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink, nn.Softsign)
#: layers that are the identity at evaluation time
Identity = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.Flatten, nn.Unflatten)
