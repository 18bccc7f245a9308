"""What the experiments share: how a β names its results."""


def beta_key(beta: float) -> str:
    """A β as a results key: "4" for 4.0, "0.5" for 0.5."""
    return str(int(beta)) if float(beta).is_integer() else str(beta)
