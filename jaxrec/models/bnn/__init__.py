"""Bayesian neural networks compressed with MIRACLE (Havasi, Peharz & Hernandez-Lobato, ICLR 2019),
in the Mean-Var or the Mean-KL parameterization (Lin, Flamich & Hernandez-Lobato, ICML 2023 Neural
Compression Workshop).

    net = bnn.BayesianNetwork(bnn.lenet5(parameterization="mean_kl"), rngs=nnx.Rngs(0))
    bnn.pretrain(net, images, labels, steps=...)                  # deterministic means
    bnn.train(net, images, labels, steps=...)                     # the variational posterior
    codec = bnn.MiracleCodec(net, images, labels)                 # progressive codec (refine = retraining)
    rec = jaxrec.compress(codec, 0, key=0, coder=jaxrec.mrc(2**10), plan=codec.plan)
    bnn.save_compressed("lenet5.jbnn", net, rec)                  # one file: container + side information
    bundle = bnn.load_bundle("lenet5.jbnn")                       # decoded network: bundle.error(x, y)

Modules: :mod:`~jaxrec.models.bnn._mean_kl` (the Gaussian Mean-KL map), ``_layers`` (Bayesian
dense/conv layers, hashing trick), ``_network`` (the network, its config and block plan), ``_train``
(optax training, checkpoints), ``_codec`` (the codec and its retraining), ``_bundle`` (the
compressed file and its loader).
"""

from jaxrec.models.bnn._bundle import (
    CODERS,
    COMPRESSED_FORMAT,
    CompressedNetwork,
    load_bundle,
    save_compressed,
)
from jaxrec.models.bnn._codec import MiracleCodec
from jaxrec.models.bnn._layers import (
    BayesianConv,
    BayesianDense,
    HashTable,
    VariationalTensor,
)
from jaxrec.models.bnn._mean_kl import (
    excess_from_log_variance_ratio,
    mean_kl_gaussian,
    mean_kl_inverse,
    neg_log_variance_ratio,
)
from jaxrec.models.bnn._network import (
    MEAN_VAR_LOG_STD_INIT,
    PARAMETERIZATIONS,
    BayesianNetwork,
    BlockLayout,
    KLPenalty,
    NetworkConfig,
    block_plan,
    lenet5,
    preprocess,
)
from jaxrec.models.bnn._train import (
    CHECKPOINT_FORMAT,
    History,
    cross_entropy,
    evaluate,
    load_checkpoint,
    minibatch,
    pretrain,
    save_checkpoint,
    train,
    updated_penalty,
    variational_loss,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CODERS",
    "COMPRESSED_FORMAT",
    "MEAN_VAR_LOG_STD_INIT",
    "PARAMETERIZATIONS",
    "BayesianConv",
    "BayesianDense",
    "BayesianNetwork",
    "BlockLayout",
    "CompressedNetwork",
    "HashTable",
    "History",
    "KLPenalty",
    "MiracleCodec",
    "NetworkConfig",
    "VariationalTensor",
    "block_plan",
    "cross_entropy",
    "evaluate",
    "excess_from_log_variance_ratio",
    "lenet5",
    "load_bundle",
    "load_checkpoint",
    "mean_kl_gaussian",
    "mean_kl_inverse",
    "minibatch",
    "neg_log_variance_ratio",
    "preprocess",
    "pretrain",
    "save_checkpoint",
    "save_compressed",
    "train",
    "updated_penalty",
    "variational_loss",
]
