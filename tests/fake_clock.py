"""A clock the tests set by hand: ``clock.t += 0.010`` is 10 ms of measured time."""


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
