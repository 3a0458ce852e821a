"""Verification: bring data into the model's input domain, run the runtimes, judge the result.

- :mod:`edgekit.verify.host`: the build's verification (every runtime on the
  same inputs, the plain-int8 baseline of a recipe) and its verdict;
- :mod:`edgekit.verify.runtimes`, :mod:`edgekit.verify.metrics`: Keras and
  LiteRT runs, accuracy / agreement / bit-exactness (the TFLM interpreter is
  :mod:`edgekit.tflm_host`);
- :mod:`edgekit.verify.inputs`: the one data path from a user's array to the
  values a model's input tensor takes (quantized with its scale and zero point);
- :mod:`edgekit.verify.isolated`: LiteRT and the TFLM interpreter run in child
  processes, so a native crash in a third-party runtime is a result, not the end
  of edgekit;
- :mod:`edgekit.verify.gates`: the user's pass/fail limits and the report's ``verdict``;
- :mod:`edgekit.verify.shipped`: content hashes of a build's files, checked before
  ``edgekit verify`` trusts them.
"""
