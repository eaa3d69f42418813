"""Scalable ensemble diversification (SED): backbones, feature caches, ensemble heads, losses."""
