"""Putting early exit into production (paper sec 5.3, App. A.4, G).

* :mod:`leap.deploy.convert`: exit-enable a published model (``leap convert``);
* :mod:`leap.deploy.diagnose`: is a model exit-compatible? (``leap diagnose``);
* :mod:`leap.deploy.bench`: latency of full depth, exit, monitoring and truncation (``leap bench``);
* :mod:`leap.deploy.calibrate`: the fastest exit rule within a quality budget (``leap calibrate``);
* :mod:`leap.deploy.serving_paths`: the fastest serving path (engine, precision, depth)
  within a budget (``leap calibrate --paths auto``);
* :mod:`leap.deploy.monitor`: exit statistics, shadow check, drift alerts and fallback;
* :mod:`leap.deploy.amortize`: when exit-aware training pays back (``leap amortize``).
"""
