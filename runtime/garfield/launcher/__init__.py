"""Running a job's plan on one machine: free loopback ports, one supervised process per replica.

`garfield run FILE` calls :func:`garfield.launcher.local.run_cli`; programs (benchmarks, tests)
call :func:`garfield.launcher.local.launch` and get a :class:`~garfield.launcher.summary.RunResult`.
"""
