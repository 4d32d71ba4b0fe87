// Verifier errors of the tk update ops' optimizers (momentum SGD, Adam), one case per chunk.
// RUN: tinymlir-opt %s --split-input-file --verify-diagnostics | filecheck %s

builtin.module {
  train.param @w trainable : tensor<4x1x1x2xi8> = dense<1> : tensor<4x1x1x2xi8>
  train.param @w.momentum : tensor<4x1x1x2xf32> = dense<0.0> : tensor<4x1x1x2xf32>
  func.func @state_shape(%g: tensor<1x2x2x4xf32>, %x: tensor<1x2x2x2xi8>, %lr: f32) {
    tk.conv_weight_grad_sgd @w, %g, %x, %lr stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 128 channels [1, 3] rounding "nearest" {x_scale = [0.5 : f32], factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32], momentum = 0.9 : f32, velocity = @w.momentum} : tensor<1x2x2x4xf32>, tensor<1x2x2x2xi8>
    func.return
  }
}

// CHECK: tk.conv_weight_grad_sgd: velocity @w.momentum must be a tensor of f32 of shape [2, 1, 1, 2] (one element per updated element), got tensor<4x1x1x2xf32>

// -----

builtin.module {
  train.param @b trainable : tensor<4xi32> = dense<0> : tensor<4xi32>
  train.param @b.m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
  func.func @adam_partial(%g: tensor<1x2x2x4xf32>, %lr: f32) {
    tk.bias_grad_sgd @b, %g, %lr rounding "nearest" {factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32], beta1 = 0.9 : f32, m = @b.m} : tensor<1x2x2x4xf32>
    func.return
  }
}

// CHECK: tk.bias_grad_sgd: Adam's 'beta1', 'beta2', 'eps', 'm', 'v' and 'step' go together

// -----

builtin.module {
  train.param @b trainable : tensor<4xi32> = dense<0> : tensor<4xi32>
  train.param @b.m : tensor<4xf32> = dense<0.0> : tensor<4xf32>
  train.param @b.v : tensor<4xf32> = dense<0.0> : tensor<4xf32>
  train.param @adam.step : tensor<i32> = dense<0> : tensor<i32>
  func.func @adam_eps(%g: tensor<1x2x2x4xf32>, %lr: f32) {
    tk.bias_grad_sgd @b, %g, %lr rounding "nearest" {factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32], beta1 = 0.9 : f32, beta2 = 0.999 : f32, eps = 0.0 : f32, m = @b.m, v = @b.v, step = @adam.step} : tensor<1x2x2x4xf32>
    func.return
  }
}

// CHECK: tk.bias_grad_sgd: eps must be positive and finite (in float32), got 0.0

// -----

builtin.module {
  train.param @b trainable : tensor<4xi32> = dense<0> : tensor<4xi32>
  train.param @b.momentum : tensor<4xf32> = dense<0.0> : tensor<4xf32>
  func.func @momentum_range(%g: tensor<1x2x2x4xf32>, %lr: f32) {
    tk.bias_grad_sgd @b, %g, %lr rounding "nearest" {factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32], momentum = 1.0 : f32, velocity = @b.momentum} : tensor<1x2x2x4xf32>
    func.return
  }
}

// CHECK: tk.bias_grad_sgd: momentum must lie in [0, 1) (in float32), got 1.0
