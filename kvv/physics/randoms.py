"""Counter-based random numbers: a pure function of (event, index, seed, salt).

Random decisions in the processing (which track a tracking-efficiency variation
loses, how a photon is smeared, the kinematics of the J/psi K signal proxy) must
not depend on how a file is chunked or which worker runs a chunk. A stateful
generator seeded per chunk would; a hash of the event number and the object's
index in the event does not.
"""

from __future__ import annotations

import zlib

import numpy as np


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective, well-mixed map of uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(event: np.ndarray, index: np.ndarray | int, seed: int, salt: str) -> np.ndarray:
    """Uniform numbers in [0, 1) that depend only on (event, index, seed, salt)."""
    key = np.uint64((zlib.crc32(salt.encode()) << 32) | (seed & 0xFFFFFFFF))
    h = _splitmix64(np.asarray(event).astype(np.uint64) ^ _splitmix64(np.full(1, key))[0])
    h = _splitmix64(h ^ np.asarray(index).astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hash_normal(event: np.ndarray, index: np.ndarray | int, seed: int, salt: str) -> np.ndarray:
    """Standard normal numbers from two hash uniforms (Box-Muller)."""
    u1 = hash_uniform(event, index, seed, salt + ":1")
    u2 = hash_uniform(event, index, seed, salt + ":2")
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
