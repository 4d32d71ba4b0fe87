// Verifier errors of the tk dialect, one case per split-input chunk.
// RUN: tinymlir-opt %s --split-input-file --verify-diagnostics | filecheck %s

func.func @mask_shape(%y: tensor<1x2x2x4xi8>) -> tensor<1x2x2x3xi1> {
  %m = tk.output_mask %y activation(-128, 127) : (tensor<1x2x2x4xi8>) -> tensor<1x2x2x3xi1>
  func.return %m : tensor<1x2x2x3xi1>
}

// CHECK: tk.output_mask: the mask must have the input's shape [1, 2, 2, 4]

// -----

func.func @input_grad_scales(%g: tensor<1x2x2x4xf32>, %w: tensor<4x1x1x2xi8>) -> tensor<1x2x2x2xf32> {
  %dx = tk.conv_input_grad %g, %w stride [1, 1] padding [0, 0] dilation [1, 1] {w_scale = [0.5 : f32]} : (tensor<1x2x2x4xf32>, tensor<4x1x1x2xi8>) -> tensor<1x2x2x2xf32>
  func.return %dx : tensor<1x2x2x2xf32>
}

// CHECK: tk.conv_input_grad: w_scale needs 4 values (one per channel), got 1

// -----

func.func @input_grad_channels(%g: tensor<1x2x2x4xf32>, %w: tensor<4x1x1x3xi8>) -> tensor<1x2x2x2xf32> {
  %dx = tk.conv_input_grad %g, %w stride [1, 1] padding [0, 0] dilation [1, 1] {w_scale = [0.5 : f32, 0.5 : f32, 0.5 : f32, 0.5 : f32]} : (tensor<1x2x2x4xf32>, tensor<4x1x1x3xi8>) -> tensor<1x2x2x2xf32>
  func.return %dx : tensor<1x2x2x2xf32>
}

// CHECK: tk.conv_input_grad: weight [C_OUT, KH, KW, C_IN] = [4, 1, 1, 3] does not match dy [1, 2, 2, 4] and result [1, 2, 2, 2]

// -----

builtin.module {
  train.param @w trainable : tensor<4x1x1x2xi8> = dense<1> : tensor<4x1x1x2xi8>
  func.func @update_channels(%g: tensor<1x2x2x4xf32>, %x: tensor<1x2x2x2xi8>, %lr: f32) {
    tk.conv_weight_grad_sgd @w, %g, %x, %lr stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 0 channels [3, 1] rounding "nearest" {x_scale = [0.5 : f32], factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32]} : tensor<1x2x2x4xf32>, tensor<1x2x2x2xi8>
    func.return
  }
}

// CHECK: tk.conv_weight_grad_sgd: channels [3, 1] must be increasing indices below 4

// -----

builtin.module {
  train.param @b trainable : tensor<4xi32> = dense<0> : tensor<4xi32>
  func.func @stochastic_without_rng(%g: tensor<1x2x2x4xf32>, %lr: f32) {
    tk.bias_grad_sgd @b, %g, %lr rounding "stochastic" {factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32]} : tensor<1x2x2x4xf32>
    func.return
  }
}

// CHECK: tk.bias_grad_sgd: stochastic rounding and its 'rng' state go together

// -----

builtin.module {
  train.param @b trainable : tensor<4xi8> = dense<0> : tensor<4xi8>
  func.func @bias_width(%g: tensor<1x2x2x4xf32>, %lr: f32) {
    tk.bias_grad_sgd @b, %g, %lr rounding "nearest" {factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32]} : tensor<1x2x2x4xf32>
    func.return
  }
}

// CHECK: tk.bias_grad_sgd: @b must hold i32 integers, got tensor<4xi8>
