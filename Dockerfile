# SAM Annotator. CPU image by default:
#   docker build -t sam-annotator .
# CUDA: PyTorch's CUDA wheels carry their own CUDA runtime, so only the torch index changes
# (run with --gpus all on a host with the NVIDIA container toolkit); BASE_IMAGE can point at
# another Python 3.10+ image, e.g. one with extra system libraries:
#   docker build -t sam-annotator:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HOME=/data/huggingface

RUN useradd --create-home --uid 1000 annotator \
    && mkdir -p /data/huggingface \
    && chown -R annotator:annotator /data

WORKDIR /app
COPY requirements.txt pyproject.toml ./
# torch first, from the chosen index (CPU or CUDA build), at the version requirements.txt pins;
# then the [onnx] extra at pyproject.toml's pin: the app exports its decoder so the browser
# decodes clicks itself (without onnx every click goes to the server).
RUN pip install --index-url "${TORCH_INDEX}" "$(grep -E '^torch==' requirements.txt)" \
    && pip install -r requirements.txt "$(grep -oE 'onnx==[0-9][0-9.]*' pyproject.toml)"

COPY app.py ./
COPY sam ./sam
COPY ui ./ui
COPY static ./static

# The "annotator" user created above, by id so the host can resolve it.
USER 1000:1000
# Model downloads (the Hugging Face cache) persist across containers in this volume.
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4).status != 200)"]
ENTRYPOINT ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
CMD ["--model", "facebook/sam-vit-base"]
