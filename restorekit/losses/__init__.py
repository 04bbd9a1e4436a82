"""Losses registered by the core: pixel (``mse``, ``l1``, ``charbonnier``), VGG ``perceptual``, and the
adversarial family (``bce_gan``, ``wgan_gp``, ``lsgan``, ``ragan``, ``hinge_gan``).

Content losses are ``nn.Module``\\ s called as ``loss(output, target)``. Adversarial losses subclass
:class:`restorekit.losses.base.AdversarialLoss` and give both the discriminator's and the generator's
term, so the trainer never special-cases a GAN flavour.
"""
