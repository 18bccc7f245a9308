"""pass@k evaluation."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator 1 − C(n−c, k) / C(n, k) (Chen et al., 2021).

    Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i), which never forms a binomial coefficient, so it is
    exact and stable for n in the tens of thousands.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}.")
    if k > n:
        raise ValueError(f"`k` ({k}) must be <= `n` ({n}), the number of samples.")
    if c > n:
        raise ValueError(f"`c` ({c}) must be <= `n` ({n}): more correct samples than samples.")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong
