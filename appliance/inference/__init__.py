"""Inference: the engine protocol, the llama.cpp engine, its worker process and the scheduler."""
