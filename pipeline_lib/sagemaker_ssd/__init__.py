"""SageMaker's own SSD: the graph inside every SageMaker Object Detection ``model.tar.gz``.

SageMaker's built-in Object Detection algorithm is MXNet's ``example/ssd``: a symbolic SSD on
``vgg16_reduced`` (SageMaker's ``vgg-16``) or MXNet's symbolic ResNet-50 (``resnet-50``),
saved as the *training* symbol (``multibox_target``, ``cls_prob``, ``loc_loss``, ``det_out``)
with ``arg:``/``aux:`` weights. odp reads, serves, evaluates, fine-tunes and trains that
graph (hyperparameter ``model_format=sagemaker``) beside GluonCV's SSD (``gluoncv``).

Modules: :mod:`.layout` (the anchor and feature-layer configuration per base network and
input size; no MXNet), :mod:`.symbol_info` (what a saved symbol is: format, base network,
classes, operators allowed; JSON only, no MXNet), :mod:`.graph` (the MXNet symbols: the
training graph as example/ssd builds it, the inference graph derived from any saved
training graph), :mod:`.network` (the Gluon block odp's training engine trains),
:mod:`.detection` (MXNet's ``MultiBoxDetection`` in numpy, for serving without MXNet),
:mod:`.pretrained` (MXNet's symbolic ImageNet bases in the offline weight store).
"""
