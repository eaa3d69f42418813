"""The network families timm lacks, one file each; each registers itself in ``tasks.models.MODELS``."""
