# CPU image that mirrors .ci/run: install erbench from the package registries, then run the tests.
# The data sets are not baked in: mount them, e.g. `docker run -v $PWD/../shared/data:/data erbench`.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /erbench
COPY . .
RUN python -m pip install -q --upgrade pip \
 && python -m pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && python -m pip install -q -e '.[test,ray,trl,stackllama,tensorboard,wandb,trackio,evaluate]' \
 && python -m pip install -q --no-deps -e examples/plugin
ENV ERBENCH_DATA=/data
CMD ["sh", "-c", "python -m pytest -q && erbench report --verify && ERBENCH_QUIET=1 erbench check"]
