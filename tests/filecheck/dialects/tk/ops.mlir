// Every tk op prints and parses back to itself.
// RUN: tinymlir-opt %s | tinymlir-opt | filecheck %s

builtin.module {
  train.param @w trainable : tensor<4x1x1x2xi8> = dense<1> : tensor<4x1x1x2xi8>
  train.param @dw trainable : tensor<1x3x3x2xi8> = dense<1> : tensor<1x3x3x2xi8>
  train.param @b trainable : tensor<4xi32> = dense<0> : tensor<4xi32>
  train.param @rng : tensor<i32> = dense<7> : tensor<i32>
  func.func @ops(%y: tensor<1x2x2x4xi8>, %g: tensor<1x2x2x4xf32>, %x: tensor<1x2x2x2xi8>, %logits: tensor<1x4xf32>, %label: i32, %lr: f32, %pooled: tensor<1x1x1x4xf32>) -> f32 {
    // CHECK: %{{.*}} = tk.output_mask %{{.*}} activation(-128, 127) : (tensor<1x2x2x4xi8>) -> tensor<1x2x2x4xi1>
    %m = tk.output_mask %y activation(-128, 127) : (tensor<1x2x2x4xi8>) -> tensor<1x2x2x4xi1>
    // CHECK: tk.mask_grad %{{.*}}, %{{.*}} : (tensor<1x2x2x4xf32>, tensor<1x2x2x4xi1>) -> tensor<1x2x2x4xf32>
    %gm = tk.mask_grad %g, %m : (tensor<1x2x2x4xf32>, tensor<1x2x2x4xi1>) -> tensor<1x2x2x4xf32>
    // CHECK: tk.add
    %s = tk.add %gm, %g : (tensor<1x2x2x4xf32>, tensor<1x2x2x4xf32>) -> tensor<1x2x2x4xf32>
    // CHECK: %{{.*}}, %{{.*}} = tk.softmax_xent %{{.*}}, %{{.*}} : (tensor<1x4xf32>, i32) -> (f32, tensor<1x4xf32>)
    %loss, %dl = tk.softmax_xent %logits, %label : (tensor<1x4xf32>, i32) -> (f32, tensor<1x4xf32>)
    // CHECK: tk.global_avgpool_grad %{{.*}} : (tensor<1x1x1x4xf32>) -> tensor<1x2x2x4xf32>
    %gp = tk.global_avgpool_grad %pooled : (tensor<1x1x1x4xf32>) -> tensor<1x2x2x4xf32>
    %w = train.load @w : tensor<4x1x1x2xi8>
    // CHECK: tk.conv_input_grad %{{.*}}, %{{.*}} stride [1, 1] padding [0, 0] dilation [1, 1] {w_scale = [5.000000e-01 : f32, 5.000000e-01 : f32, 5.000000e-01 : f32, 2.500000e-01 : f32]}
    %dx = tk.conv_input_grad %s, %w stride [1, 1] padding [0, 0] dilation [1, 1] {w_scale = [0.5 : f32, 0.5 : f32, 0.5 : f32, 0.25 : f32]} : (tensor<1x2x2x4xf32>, tensor<4x1x1x2xi8>) -> tensor<1x2x2x2xf32>
    %dw = train.load @dw : tensor<1x3x3x2xi8>
    // CHECK: tk.depthwise_conv_input_grad %{{.*}}, %{{.*}} stride [1, 1] padding [1, 1] dilation [1, 1]
    %ddx = tk.depthwise_conv_input_grad %dx, %dw stride [1, 1] padding [1, 1] dilation [1, 1] {w_scale = [1.0 : f32, 2.0 : f32]} : (tensor<1x2x2x2xf32>, tensor<1x3x3x2xi8>) -> tensor<1x2x2x2xf32>
    // CHECK: tk.conv_weight_grad_sgd @w, %{{.*}}, %{{.*}}, %{{.*}} stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 128 channels [1, 3] rounding "stochastic" rng @rng
    tk.conv_weight_grad_sgd @w, %s, %x, %lr stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 128 channels [1, 3] rounding "stochastic" rng @rng {x_scale = [0.5 : f32], factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 1.0 : f32]} : tensor<1x2x2x4xf32>, tensor<1x2x2x2xi8>
    // CHECK: tk.depthwise_conv_weight_grad_sgd @dw, %{{.*}}, %{{.*}}, %{{.*}} stride [1, 1] padding [1, 1] dilation [1, 1] x_offset 0 rounding "nearest"
    tk.depthwise_conv_weight_grad_sgd @dw, %ddx, %x, %lr stride [1, 1] padding [1, 1] dilation [1, 1] x_offset 0 rounding "nearest" {x_scale = [0.5 : f32], factor = [1.0 : f32, 3.0e+09 : f32]} : tensor<1x2x2x2xf32>, tensor<1x2x2x2xi8>
    // CHECK: tk.bias_grad_sgd @b, %{{.*}}, %{{.*}} rounding "nearest" {factor = [1.000000e+00 : f32, 1.000000e+00 : f32, 1.000000e+00 : f32, 3.000000e+09 : f32]}
    tk.bias_grad_sgd @b, %s, %lr rounding "nearest" {factor = [1.0 : f32, 1.0 : f32, 1.0 : f32, 3.0e+09 : f32]} : tensor<1x2x2x4xf32>
    func.return %loss : f32
  }
}
